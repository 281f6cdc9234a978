//! Codex's sandbox state: the sandbox Codex wants its MCP servers to run commands in.
//!
//! Codex sends it two ways, both handled here: the `codex/sandbox-state/update` request
//! (older, stateful: it applies to every later call) and the `codex/sandbox-state-meta` key
//! in a tool call's `_meta` (newer: it applies to that call only). Both carry the same
//! object: `sandboxPolicy` (tagged by `type`, fields in snake_case) and `sandboxCwd`.
//! Unknown fields are ignored, as Codex keeps adding some.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;
use supervisor::{SandboxMode, SandboxPolicy};

/// Experimental capability for the update request.
pub const CAPABILITY: &str = "codex/sandbox-state";
/// Experimental capability (and `_meta` key) for the per-call state.
pub const META_CAPABILITY: &str = "codex/sandbox-state-meta";
/// The custom request that replaces the server's sandbox state.
pub const UPDATE_METHOD: &str = "codex/sandbox-state/update";
/// Version advertised for both capabilities, as Codex's own server does.
pub const CAPABILITY_VERSION: &str = "1.0.0";

/// Codex's `SandboxPolicy`, as it serializes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum CodexSandboxPolicy {
    DangerFullAccess,
    ReadOnly {
        #[serde(default)]
        network_access: bool,
    },
    /// Codex runs inside a sandbox someone else set up: it adds none of its own.
    ExternalSandbox {
        #[serde(default)]
        network_access: NetworkAccess,
    },
    WorkspaceWrite {
        #[serde(default)]
        writable_roots: Vec<PathBuf>,
        #[serde(default)]
        network_access: bool,
        #[serde(default)]
        exclude_tmpdir_env_var: bool,
        #[serde(default)]
        exclude_slash_tmp: bool,
    },
}

/// `external-sandbox` spells network access as "restricted" | "enabled"; accept a bool too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(untagged)]
enum NetworkAccess {
    Bool(bool),
    Named(NetworkAccessName),
    #[default]
    #[serde(skip)]
    Unset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum NetworkAccessName {
    Restricted,
    Enabled,
}

impl NetworkAccess {
    fn enabled(self) -> bool {
        matches!(
            self,
            NetworkAccess::Bool(true) | NetworkAccess::Named(NetworkAccessName::Enabled)
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    sandbox_policy: Option<CodexSandboxPolicy>,
    sandbox_cwd: Option<String>,
    permission_profile: Option<Value>,
}

/// A sandbox state sent by the client, converted to execgate's vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxState {
    pub policy: SandboxPolicy,
    /// The directory Codex considers the workspace; writable under `workspace-write`.
    pub sandbox_cwd: Option<PathBuf>,
}

impl SandboxState {
    /// Parses the params of an update request or the value of the `_meta` key.
    /// The error is one line for the client (it becomes `invalid_params`).
    pub fn from_json(value: &Value) -> Result<SandboxState, String> {
        if !value.is_object() {
            return Err(format!(
                "sandbox state must be an object with `sandboxPolicy`, got {}",
                json_kind(value)
            ));
        }
        let wire: Wire = serde_json::from_value(value.clone())
            .map_err(|e| format!("invalid sandbox state: {e}"))?;
        let Some(codex) = wire.sandbox_policy else {
            return Err(if wire.permission_profile.is_some() {
                "sandbox state has `permissionProfile` but no `sandboxPolicy`: execgate needs \
                 `sandboxPolicy` (type read-only | workspace-write | danger-full-access)"
                    .to_owned()
            } else {
                "sandbox state is missing `sandboxPolicy` (an object whose `type` is read-only, \
                 workspace-write or danger-full-access)"
                    .to_owned()
            });
        };
        let sandbox_cwd = wire.sandbox_cwd.map(|cwd| parse_cwd(&cwd)).transpose()?;
        let mut policy = match codex {
            CodexSandboxPolicy::DangerFullAccess => {
                let mut p = SandboxPolicy::new(SandboxMode::DangerFullAccess);
                p.network = true;
                p
            }
            CodexSandboxPolicy::ExternalSandbox { network_access } => {
                let mut p = SandboxPolicy::new(SandboxMode::DangerFullAccess);
                p.network = network_access.enabled();
                p
            }
            CodexSandboxPolicy::ReadOnly { network_access } => {
                let mut p = SandboxPolicy::new(SandboxMode::ReadOnly);
                p.network = network_access;
                p
            }
            CodexSandboxPolicy::WorkspaceWrite {
                writable_roots,
                network_access,
                exclude_tmpdir_env_var,
                exclude_slash_tmp,
            } => {
                if let Some(bad) = writable_roots.iter().find(|r| !r.is_absolute()) {
                    return Err(format!(
                        "writable_roots entry `{}` is not an absolute path",
                        bad.display()
                    ));
                }
                let mut p = SandboxPolicy::new(SandboxMode::WorkspaceWrite);
                p.writable_roots = writable_roots;
                p.network = network_access;
                p.exclude_tmpdir_env_var = exclude_tmpdir_env_var;
                p.exclude_slash_tmp = exclude_slash_tmp;
                p
            }
        };
        if policy.mode == SandboxMode::WorkspaceWrite
            && let Some(cwd) = &sandbox_cwd
            && !policy.writable_roots.contains(cwd)
        {
            // Codex's workspace-write makes its cwd writable; so does execgate.
            policy.writable_roots.push(cwd.clone());
        }
        if policy.mode == SandboxMode::WorkspaceWrite {
            // A root that is not there would fail every later call: refuse the state now.
            for root in &policy.writable_roots {
                if !root.is_dir() {
                    let what = if Some(root) == sandbox_cwd.as_ref() {
                        "sandboxCwd"
                    } else {
                        "writable_roots entry"
                    };
                    return Err(format!(
                        "{what} `{}` is not an existing directory",
                        root.display()
                    ));
                }
            }
        }
        Ok(SandboxState {
            policy,
            sandbox_cwd,
        })
    }
}

/// `sandboxCwd` is a path, or (newer Codex) a `file://` URL.
fn parse_cwd(raw: &str) -> Result<PathBuf, String> {
    let path = match raw.strip_prefix("file://") {
        Some(rest) => {
            // `file:///abs` or `file://localhost/abs`.
            let rest = rest.strip_prefix("localhost").unwrap_or(rest);
            percent_decode(rest).ok_or_else(|| format!("sandboxCwd `{raw}` is not a valid URL"))?
        }
        None => raw.to_owned(),
    };
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err(format!("sandboxCwd `{raw}` is not an absolute path"));
    }
    Ok(path)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// "a string", "an array", ...: for error messages about JSON values.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<SandboxState, String> {
        SandboxState::from_json(&v)
    }

    #[test]
    fn read_only() {
        let s = parse(json!({"sandboxPolicy": {"type": "read-only"}, "sandboxCwd": "/w"})).unwrap();
        assert_eq!(s.policy, SandboxPolicy::new(SandboxMode::ReadOnly));
        assert_eq!(s.sandbox_cwd, Some(PathBuf::from("/w")));
    }

    #[test]
    fn workspace_write_with_every_field_and_unknown_ones() {
        let code = tempfile::tempdir().unwrap();
        let repo = tempfile::tempdir().unwrap();
        let s = parse(json!({
            "sandboxPolicy": {
                "type": "workspace-write",
                "writable_roots": [code.path()],
                "network_access": true,
                "exclude_tmpdir_env_var": true,
                "exclude_slash_tmp": true,
                "read_only_access": {"type": "full-access"}
            },
            "sandboxCwd": repo.path(),
            "codexLinuxSandboxExe": null,
            "useLegacyLandlock": false
        }))
        .unwrap();
        let p = s.policy;
        assert_eq!(p.mode, SandboxMode::WorkspaceWrite);
        assert_eq!(
            p.writable_roots,
            vec![code.path().to_owned(), repo.path().to_owned()]
        );
        assert!(p.network && p.exclude_tmpdir_env_var && p.exclude_slash_tmp);
    }

    #[test]
    fn danger_full_access_and_external_sandbox() {
        let s = parse(json!({"sandboxPolicy": {"type": "danger-full-access"}})).unwrap();
        assert_eq!(s.policy.mode, SandboxMode::DangerFullAccess);
        assert!(s.policy.network);
        let s = parse(
            json!({"sandboxPolicy": {"type": "external-sandbox", "network_access": "restricted"}}),
        )
        .unwrap();
        assert_eq!(s.policy.mode, SandboxMode::DangerFullAccess);
        assert!(!s.policy.network);
    }

    #[test]
    fn file_url_cwd() {
        let s =
            parse(json!({"sandboxPolicy": {"type": "read-only"}, "sandboxCwd": "file:///a%20b/c"}))
                .unwrap();
        assert_eq!(s.sandbox_cwd, Some(PathBuf::from("/a b/c")));
    }

    #[test]
    fn malformed_states_say_what_is_wrong() {
        let cases = [
            (json!("read-only"), "must be an object"),
            (json!({}), "missing `sandboxPolicy`"),
            (json!({"permissionProfile": {}}), "no `sandboxPolicy`"),
            (
                json!({"sandboxPolicy": {"type": "yolo"}}),
                "unknown variant `yolo`",
            ),
            (
                json!({"sandboxPolicy": "read-only"}),
                "invalid sandbox state",
            ),
            (
                json!({"sandboxPolicy": {"type": "workspace-write", "writable_roots": ["rel"]}}),
                "`rel` is not an absolute path",
            ),
            (
                json!({"sandboxPolicy": {"type": "workspace-write", "network_access": "yes"}}),
                "invalid sandbox state",
            ),
            (
                json!({"sandboxPolicy": {"type": "read-only"}, "sandboxCwd": "relative"}),
                "not an absolute path",
            ),
            (
                json!({"sandboxPolicy": {"type": "workspace-write",
                        "writable_roots": ["/nonexistent-root-xyz"]}}),
                "writable_roots entry `/nonexistent-root-xyz` is not an existing directory",
            ),
            (
                json!({"sandboxPolicy": {"type": "workspace-write"},
                       "sandboxCwd": "/nonexistent-cwd-xyz"}),
                "sandboxCwd `/nonexistent-cwd-xyz` is not an existing directory",
            ),
        ];
        for (value, want) in cases {
            let err = parse(value.clone()).unwrap_err();
            assert!(err.contains(want), "{value}: {err}");
        }
    }
}
