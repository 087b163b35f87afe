-- Argo CD health check for trust.signet.dev/TrustedRegistry (README.md, "GitOps").
-- Healthy:     Ready=True for the current generation.
-- Progressing: Signet has not observed the current generation yet, is still writing the
--              policy (Reconciling=True), or is removing the registry from Kyverno's
--              policies after a delete (finalizer).
-- Degraded:    Stalled=True: Signet cannot make progress until the spec, a key Secret or the
--              cluster changes (InvalidSpec, SecretNotFound, KyvernoNotInstalled, ...). The
--              last good policy stays in force meanwhile.
local hs = {}
local function condition(t)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == t then
        return c
      end
    end
  end
  return nil
end
local function describe(c)
  if c == nil then
    return ""
  end
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason
end

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Deleting: Signet is removing this registry from the Kyverno policies"
  return hs
end
if obj.status == nil or obj.status.observedGeneration == nil or
   obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for Signet to observe generation " .. tostring(obj.metadata.generation)
  return hs
end
local ready = condition("Ready")
local stalled = condition("Stalled")
local reconciling = condition("Reconciling")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  if ready ~= nil and ready.status == "False" then
    hs.message = describe(ready)
  else
    hs.message = describe(stalled)
  end
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  return hs
end
hs.status = "Progressing"
if ready ~= nil then
  hs.message = describe(ready)
elseif reconciling ~= nil then
  hs.message = describe(reconciling)
else
  hs.message = "Waiting for Signet to report readiness"
end
return hs
