//! Codex's sandbox state: the sandbox Codex wants its MCP servers to run commands in.
//!
//! Codex sends it two ways, both handled here: the `codex/sandbox-state/update` request
//! (older, stateful: it applies to every later call) and the `codex/sandbox-state-meta` key
//! in a tool call's `_meta` (newer: it applies to that call only). The object carries one
//! of two descriptions of the sandbox, plus `sandboxCwd` (a path, or a `file://` URL):
//!
//! - `permissionProfile` (current Codex, 0.17x): `{"type":"disabled"}`,
//!   `{"type":"external","network":...}` or `{"type":"managed","file_system":...,
//!   "network":...}`, where `file_system` is `{"type":"unrestricted"}` or
//!   `{"type":"restricted","entries":[{"path":...,"access":"read"|"write"|"none"}]}`;
//! - `sandboxPolicy` (older Codex): tagged by `type` (read-only, workspace-write,
//!   danger-full-access, external-sandbox), fields in snake_case.
//!
//! Parsing never fails: a state this server cannot read falls back to the server's own
//! sandbox (its flags), and a part it cannot honour (a writable root that does not exist,
//! a read restriction) is dropped; either way the call's result says so in `warnings`, so
//! the agent and the person see it, and no call fails because of Codex's bookkeeping.
//! Unknown fields are ignored, as Codex keeps adding some.

use std::path::{Path, PathBuf};

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

/// Codex's legacy `SandboxPolicy`, as it serializes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum LegacyPolicy {
    DangerFullAccess,
    ReadOnly {
        #[serde(default)]
        network_access: bool,
    },
    /// Codex runs inside a sandbox someone else set up: it adds none of its own.
    ExternalSandbox {
        #[serde(default)]
        network_access: Network,
    },
    WorkspaceWrite {
        #[serde(default)]
        writable_roots: Vec<String>,
        #[serde(default)]
        network_access: bool,
        #[serde(default)]
        exclude_tmpdir_env_var: bool,
        #[serde(default)]
        exclude_slash_tmp: bool,
    },
}

/// Network access, spelt "restricted" | "enabled" (a bool in some older states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(untagged)]
enum Network {
    Bool(bool),
    Named(NetworkName),
    #[default]
    #[serde(skip)]
    Unset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum NetworkName {
    Restricted,
    Enabled,
}

impl Network {
    fn enabled(self) -> bool {
        matches!(
            self,
            Network::Bool(true) | Network::Named(NetworkName::Enabled)
        )
    }
}

/// Codex's `PermissionProfile` (tagged by `type`, snake_case).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum PermissionProfile {
    /// Codex applies no sandbox.
    Disabled,
    /// Filesystem isolation is somebody else's; only the network is said.
    External {
        #[serde(default)]
        network: Network,
    },
    /// Codex builds the sandbox from these permissions.
    Managed {
        file_system: FileSystem,
        #[serde(default)]
        network: Network,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum FileSystem {
    Unrestricted,
    Restricted {
        #[serde(default)]
        entries: Vec<Entry>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Entry {
    path: EntryPath,
    access: Access,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Access {
    Read,
    Write,
    None,
    /// A mode a newer Codex may add: treated as not writable.
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum EntryPath {
    /// An absolute path, or (as Codex sends it to MCP servers) a `file://` URL.
    Path {
        path: String,
    },
    Special {
        value: Special,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Special {
    Root,
    Minimal,
    CurrentWorkingDirectory,
    ProjectRoots {
        #[serde(default)]
        subpath: Option<String>,
    },
    Tmpdir,
    SlashTmp,
    #[serde(other)]
    Other,
}

/// A sandbox state sent by the client, converted to execgate's vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxState {
    /// The sandbox to use; `None`: the state could not be read, use the server's own.
    pub policy: Option<SandboxPolicy>,
    /// The directory Codex considers the workspace; writable under `workspace-write`.
    pub sandbox_cwd: Option<PathBuf>,
    /// What was not understood or not honoured, one line each, for the call's result.
    pub warnings: Vec<String>,
}

impl SandboxState {
    /// Reads the params of an update request or the value of the `_meta` key. Never
    /// fails: see the module docs.
    pub fn from_json(value: &Value) -> SandboxState {
        let mut warnings = Vec::new();
        let Some(object) = value.as_object() else {
            warnings.push(format!(
                "the sandbox state is {}, not an object with `permissionProfile` or \
                 `sandboxPolicy`: using the server's own sandbox",
                json_kind(value)
            ));
            return SandboxState {
                policy: None,
                sandbox_cwd: None,
                warnings,
            };
        };
        let sandbox_cwd = match object.get("sandboxCwd") {
            None | Some(Value::Null) => None,
            Some(Value::String(raw)) => match parse_path(raw) {
                Ok(path) => Some(path),
                Err(e) => {
                    warnings.push(format!("sandboxCwd: {e}; ignored"));
                    None
                }
            },
            Some(other) => {
                warnings.push(format!(
                    "sandboxCwd is {}, not a path: ignored",
                    json_kind(other)
                ));
                None
            }
        };
        let cwd = sandbox_cwd.as_deref();
        let mut policy = None;
        if let Some(profile) = object.get("permissionProfile").filter(|v| !v.is_null()) {
            match PermissionProfile::deserialize(profile) {
                Ok(profile) => policy = Some(from_profile(&profile, cwd, &mut warnings)),
                Err(e) => warnings.push(format!(
                    "permissionProfile {} is not one execgate knows ({e})",
                    short(profile)
                )),
            }
        }
        if policy.is_none()
            && let Some(legacy) = object.get("sandboxPolicy").filter(|v| !v.is_null())
        {
            match LegacyPolicy::deserialize(legacy) {
                Ok(legacy) => policy = Some(from_legacy(legacy, cwd, &mut warnings)),
                Err(e) => warnings.push(format!(
                    "sandboxPolicy {} is not one execgate knows ({e})",
                    short(legacy)
                )),
            }
        }
        let Some(mut policy) = policy else {
            if warnings.is_empty() {
                warnings.push(
                    "the sandbox state has neither `permissionProfile` nor `sandboxPolicy`"
                        .to_owned(),
                );
            }
            warnings.push("using the server's own sandbox (its command line)".to_owned());
            return SandboxState {
                policy: None,
                sandbox_cwd,
                warnings,
            };
        };
        if policy.mode == SandboxMode::WorkspaceWrite {
            // A root that is not there would fail every call: drop it, and say so.
            policy.writable_roots.retain(|root| {
                let keep = root.is_dir();
                if !keep {
                    warnings.push(format!(
                        "writable root `{}` is not an existing directory: left out",
                        root.display()
                    ));
                }
                keep
            });
            let mut seen = Vec::new();
            policy.writable_roots.retain(|r| {
                let new = !seen.contains(r);
                seen.push(r.clone());
                new
            });
        }
        SandboxState {
            policy: Some(policy),
            sandbox_cwd,
            warnings,
        }
    }
}

fn with_network(mode: SandboxMode, network: bool) -> SandboxPolicy {
    let mut p = SandboxPolicy::new(mode);
    p.network = network;
    p
}

fn from_legacy(
    legacy: LegacyPolicy,
    cwd: Option<&Path>,
    warnings: &mut Vec<String>,
) -> SandboxPolicy {
    match legacy {
        LegacyPolicy::DangerFullAccess => with_network(SandboxMode::DangerFullAccess, true),
        LegacyPolicy::ExternalSandbox { network_access } => {
            with_network(SandboxMode::DangerFullAccess, network_access.enabled())
        }
        LegacyPolicy::ReadOnly { network_access } => {
            with_network(SandboxMode::ReadOnly, network_access)
        }
        LegacyPolicy::WorkspaceWrite {
            writable_roots,
            network_access,
            exclude_tmpdir_env_var,
            exclude_slash_tmp,
        } => {
            let mut p = with_network(SandboxMode::WorkspaceWrite, network_access);
            for raw in writable_roots {
                match parse_path(&raw) {
                    Ok(path) => p.writable_roots.push(path),
                    Err(e) => warnings.push(format!("writable root: {e}; left out")),
                }
            }
            // Codex's workspace-write makes its cwd writable; so does execgate.
            p.writable_roots.extend(cwd.map(Path::to_path_buf));
            p.exclude_tmpdir_env_var = exclude_tmpdir_env_var;
            p.exclude_slash_tmp = exclude_slash_tmp;
            p
        }
    }
}

fn from_profile(
    profile: &PermissionProfile,
    cwd: Option<&Path>,
    warnings: &mut Vec<String>,
) -> SandboxPolicy {
    let (entries, network) = match profile {
        PermissionProfile::Disabled => return with_network(SandboxMode::DangerFullAccess, true),
        PermissionProfile::External { network }
        | PermissionProfile::Managed {
            file_system: FileSystem::Unrestricted,
            network,
        } => return with_network(SandboxMode::DangerFullAccess, network.enabled()),
        PermissionProfile::Managed {
            file_system: FileSystem::Restricted { entries },
            network,
        } => (entries, network.enabled()),
    };
    let mut roots = Vec::new();
    let (mut tmpdir, mut slash_tmp) = (false, false);
    let (mut root_read, mut root_write) = (false, false);
    let mut narrowing = false;
    for entry in entries {
        let writes = entry.access == Access::Write;
        if !matches!(entry.access, Access::Read | Access::Write) {
            narrowing = true;
            warnings.push(format!(
                "{} is not readable in the permission profile; execgate's sandbox does not hide \
                 paths: it stays readable",
                describe(&entry.path)
            ));
        }
        let workspace = |warnings: &mut Vec<String>| match cwd {
            Some(cwd) => Some(cwd.to_path_buf()),
            None => {
                warnings.push(format!(
                    "{} is writable in the permission profile but no sandboxCwd was sent: not \
                     writable",
                    describe(&entry.path)
                ));
                None
            }
        };
        match &entry.path {
            EntryPath::Special { value } => match value {
                Special::Root => match entry.access {
                    Access::Write => root_write = true,
                    Access::Read => root_read = true,
                    Access::None | Access::Other => {}
                },
                Special::Minimal => {}
                Special::CurrentWorkingDirectory | Special::ProjectRoots { subpath: None } => {
                    if writes {
                        roots.extend(workspace(warnings));
                    } else {
                        narrowing = true;
                    }
                }
                Special::ProjectRoots { subpath: Some(sub) } => {
                    if writes {
                        if Path::new(sub).is_absolute() || sub.split('/').any(|c| c == "..") {
                            warnings.push(format!(
                                "project root subpath `{sub}` leaves the project: left out"
                            ));
                        } else {
                            roots.extend(workspace(warnings).map(|w| w.join(sub)));
                        }
                    } else {
                        narrowing = true;
                    }
                }
                Special::Tmpdir => tmpdir |= writes,
                Special::SlashTmp => slash_tmp |= writes,
                Special::Other => {
                    if writes {
                        warnings.push(
                            "a special path execgate does not know is writable in the \
                             permission profile: left out"
                                .to_owned(),
                        );
                    }
                }
            },
            EntryPath::Path { path } => {
                if writes {
                    match parse_path(path) {
                        Ok(p) => roots.push(p),
                        Err(e) => warnings.push(format!("writable root: {e}; left out")),
                    }
                } else {
                    narrowing = true;
                }
            }
            EntryPath::Other => {
                if writes {
                    warnings.push(
                        "a path of a kind execgate does not know is writable in the permission \
                         profile: left out"
                            .to_owned(),
                    );
                }
            }
        }
    }
    if root_write && !narrowing {
        return with_network(SandboxMode::DangerFullAccess, network);
    }
    if root_write {
        warnings.push(
            "the permission profile makes the whole disk writable except some paths, which \
             execgate cannot carve out: only the profile's other writable paths are writable"
                .to_owned(),
        );
    } else if !root_read {
        warnings.push(
            "the permission profile restricts what may be read; execgate's sandbox restricts \
             writes only: everything stays readable"
                .to_owned(),
        );
    }
    if roots.is_empty() && !tmpdir && !slash_tmp {
        return with_network(SandboxMode::ReadOnly, network);
    }
    let mut p = with_network(SandboxMode::WorkspaceWrite, network);
    p.writable_roots = roots;
    p.exclude_tmpdir_env_var = !tmpdir;
    p.exclude_slash_tmp = !slash_tmp;
    p
}

fn describe(path: &EntryPath) -> String {
    match path {
        EntryPath::Path { path } => format!("`{path}`"),
        EntryPath::Special { value } => match value {
            Special::Root => "the whole disk".to_owned(),
            Special::Minimal => "the system's minimal paths".to_owned(),
            Special::CurrentWorkingDirectory | Special::ProjectRoots { subpath: None } => {
                "the workspace (sandboxCwd)".to_owned()
            }
            Special::ProjectRoots { subpath: Some(s) } => format!("`{s}` in the workspace"),
            Special::Tmpdir => "$TMPDIR".to_owned(),
            Special::SlashTmp => "/tmp".to_owned(),
            Special::Other => "a special path execgate does not know".to_owned(),
        },
        EntryPath::Other => "a path of a kind execgate does not know".to_owned(),
    }
}

/// A path as Codex sends it: absolute, or (newer Codex) a `file://` URL.
fn parse_path(raw: &str) -> Result<PathBuf, String> {
    let path = match raw.strip_prefix("file://") {
        Some(rest) => {
            // `file:///abs` or `file://localhost/abs`.
            let rest = rest.strip_prefix("localhost").unwrap_or(rest);
            percent_decode(rest).ok_or_else(|| format!("`{raw}` is not a valid file URL"))?
        }
        None => raw.to_owned(),
    };
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err(format!("`{raw}` is not an absolute path"));
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

/// A JSON value in at most 200 characters, for a warning.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    }
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

    fn parse(v: Value) -> SandboxState {
        SandboxState::from_json(&v)
    }

    /// A state that was understood whole: its policy, no warnings.
    fn clean(v: Value) -> SandboxPolicy {
        let s = parse(v.clone());
        assert!(s.warnings.is_empty(), "{v}: {:?}", s.warnings);
        s.policy.unwrap_or_else(|| panic!("{v}: fell back"))
    }

    fn url(p: &Path) -> String {
        format!("file://{}", p.display()).replace(' ', "%20")
    }

    #[test]
    fn legacy_read_only() {
        let s = parse(json!({"sandboxPolicy": {"type": "read-only"}, "sandboxCwd": "/w"}));
        assert_eq!(s.policy, Some(SandboxPolicy::new(SandboxMode::ReadOnly)));
        assert_eq!(s.sandbox_cwd, Some(PathBuf::from("/w")));
        assert!(s.warnings.is_empty());
    }

    #[test]
    fn legacy_workspace_write_with_every_field_and_unknown_ones() {
        let code = tempfile::tempdir().unwrap();
        let repo = tempfile::tempdir().unwrap();
        let p = clean(json!({
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
        }));
        assert_eq!(p.mode, SandboxMode::WorkspaceWrite);
        assert_eq!(
            p.writable_roots,
            vec![code.path().to_owned(), repo.path().to_owned()]
        );
        assert!(p.network && p.exclude_tmpdir_env_var && p.exclude_slash_tmp);
    }

    #[test]
    fn legacy_danger_full_access_and_external_sandbox() {
        let p = clean(json!({"sandboxPolicy": {"type": "danger-full-access"}}));
        assert_eq!(p.mode, SandboxMode::DangerFullAccess);
        assert!(p.network);
        let p = clean(
            json!({"sandboxPolicy": {"type": "external-sandbox", "network_access": "restricted"}}),
        );
        assert_eq!(p.mode, SandboxMode::DangerFullAccess);
        assert!(!p.network);
    }

    #[test]
    fn file_url_cwd() {
        let s =
            parse(json!({"sandboxPolicy": {"type": "read-only"}, "sandboxCwd": "file:///a%20b/c"}));
        assert_eq!(s.sandbox_cwd, Some(PathBuf::from("/a b/c")));
        let s = parse(
            json!({"sandboxPolicy": {"type": "read-only"}, "sandboxCwd": "file://localhost/x"}),
        );
        assert_eq!(s.sandbox_cwd, Some(PathBuf::from("/x")));
    }

    #[test]
    fn permission_profile_disabled_and_external() {
        // Exactly what Codex 0.171 sends under `--sandbox danger-full-access`.
        let p =
            clean(json!({"permissionProfile": {"type": "disabled"}, "sandboxCwd": "file:///w"}));
        assert_eq!(p, with_network(SandboxMode::DangerFullAccess, true));
        let p = clean(json!({"permissionProfile": {"type": "external", "network": "restricted"}}));
        assert_eq!(p, with_network(SandboxMode::DangerFullAccess, false));
        let p = clean(json!({"permissionProfile": {"type": "external", "network": "enabled"}}));
        assert_eq!(p, with_network(SandboxMode::DangerFullAccess, true));
        let p = clean(json!({"permissionProfile": {"type": "managed",
            "file_system": {"type": "unrestricted"}, "network": "restricted"}}));
        assert_eq!(p, with_network(SandboxMode::DangerFullAccess, false));
    }

    #[test]
    fn permission_profile_read_only() {
        let p = clean(json!({
            "permissionProfile": {"type": "managed", "file_system": {"type": "restricted", "entries": [
                {"path": {"type": "special", "value": {"kind": "root"}}, "access": "read"}
            ]}, "network": "restricted"},
            "sandboxCwd": "file:///w"
        }));
        assert_eq!(p, SandboxPolicy::new(SandboxMode::ReadOnly));
    }

    #[test]
    fn permission_profile_workspace_write_with_roots_tmp_and_network() {
        let w = tempfile::tempdir().unwrap();
        let extra = tempfile::tempdir().unwrap();
        std::fs::create_dir(w.path().join("sub")).unwrap();
        let p = clean(json!({
            "permissionProfile": {"type": "managed", "file_system": {"type": "restricted", "entries": [
                {"path": {"type": "special", "value": {"kind": "root"}}, "access": "read"},
                {"path": {"type": "special", "value": {"kind": "current_working_directory"}}, "access": "write"},
                {"path": {"type": "special", "value": {"kind": "project_roots", "subpath": "sub"}}, "access": "write"},
                {"path": {"type": "path", "path": url(extra.path())}, "access": "write"},
                {"path": {"type": "special", "value": {"kind": "tmpdir"}}, "access": "write"},
                {"path": {"type": "special", "value": {"kind": "minimal"}}, "access": "read"}
            ], "glob_scan_max_depth": 3}, "network": "enabled"},
            "sandboxCwd": url(w.path()),
            "codexLinuxSandboxExe": "/usr/bin/codex-linux-sandbox",
            "useLegacyLandlock": false
        }));
        assert_eq!(p.mode, SandboxMode::WorkspaceWrite);
        assert_eq!(
            p.writable_roots,
            [
                w.path().to_owned(),
                w.path().join("sub"),
                extra.path().to_owned()
            ]
        );
        assert!(p.network);
        assert!(!p.exclude_tmpdir_env_var, "tmpdir is writable");
        assert!(p.exclude_slash_tmp, "/tmp is not");
        // project_roots without a subpath is the workspace too.
        let p = clean(json!({
            "permissionProfile": {"type": "managed", "file_system": {"type": "restricted", "entries": [
                {"path": {"type": "special", "value": {"kind": "root"}}, "access": "read"},
                {"path": {"type": "special", "value": {"kind": "project_roots"}}, "access": "write"},
                {"path": {"type": "special", "value": {"kind": "slash_tmp"}}, "access": "write"}
            ]}, "network": "restricted"},
            "sandboxCwd": w.path()
        }));
        assert_eq!(p.writable_roots, [w.path().to_owned()]);
        assert!(!p.network && !p.exclude_slash_tmp && p.exclude_tmpdir_env_var);
    }

    #[test]
    fn permission_profile_whole_disk_writable_is_full_access() {
        let p = clean(
            json!({"permissionProfile": {"type": "managed", "file_system": {"type": "restricted",
            "entries": [{"path": {"type": "special", "value": {"kind": "root"}}, "access": "write"}]},
            "network": "enabled"}}),
        );
        assert_eq!(p, with_network(SandboxMode::DangerFullAccess, true));
    }

    #[test]
    fn what_cannot_be_honoured_is_dropped_with_a_warning() {
        let w = tempfile::tempdir().unwrap();
        // The whole disk writable except a path: not carved out, so not full access.
        let s = parse(
            json!({"permissionProfile": {"type": "managed", "file_system": {"type": "restricted",
            "entries": [
                {"path": {"type": "special", "value": {"kind": "root"}}, "access": "write"},
                {"path": {"type": "path", "path": "/etc"}, "access": "read"},
                {"path": {"type": "special", "value": {"kind": "current_working_directory"}}, "access": "write"},
                {"path": {"type": "special", "value": {"kind": "some_future_kind"}}, "access": "write"},
                {"path": {"type": "path", "path": "/nonexistent-root-xyz"}, "access": "write"},
                {"path": {"type": "path", "path": "relative"}, "access": "write"},
                {"path": {"type": "path", "path": "/secret"}, "access": "none"}
            ]}, "network": "restricted"}, "sandboxCwd": w.path()}),
        );
        let p = s.policy.unwrap();
        assert_eq!(p.mode, SandboxMode::WorkspaceWrite);
        assert_eq!(p.writable_roots, [w.path().to_owned()]);
        let all = s.warnings.join("\n");
        for want in [
            "cannot carve out",
            "special path execgate does not know",
            "`/nonexistent-root-xyz` is not an existing directory: left out",
            "`relative` is not an absolute path",
            "`/secret` is not readable",
        ] {
            assert!(all.contains(want), "{want}: {all}");
        }
        // Restricted reads: warned, not enforced.
        let s = parse(
            json!({"permissionProfile": {"type": "managed", "file_system": {"type": "restricted",
            "entries": [{"path": {"type": "special", "value": {"kind": "minimal"}}, "access": "read"}]}}}),
        );
        assert_eq!(s.policy.unwrap().mode, SandboxMode::ReadOnly);
        assert!(
            s.warnings[0].contains("everything stays readable"),
            "{:?}",
            s.warnings
        );
        // Legacy: a root that is missing or relative is dropped, the rest applies.
        let s = parse(json!({"sandboxPolicy": {"type": "workspace-write",
            "writable_roots": ["/nonexistent-root-xyz", "rel", w.path()]},
            "sandboxCwd": "/nonexistent-cwd-xyz"}));
        assert_eq!(s.policy.unwrap().writable_roots, [w.path().to_owned()]);
        let all = s.warnings.join("\n");
        assert!(
            all.contains("`/nonexistent-cwd-xyz` is not an existing directory"),
            "{all}"
        );
        assert!(all.contains("`rel` is not an absolute path"), "{all}");
    }

    #[test]
    fn unknown_shapes_fall_back_to_the_server_sandbox_with_a_warning() {
        let cases = [
            (json!("read-only"), "is a string"),
            (json!({}), "neither `permissionProfile` nor `sandboxPolicy`"),
            (json!({"sandboxCwd": "/x"}), "neither"),
            (
                json!({"permissionProfile": {"type": "sandboxed-by-magic"}}),
                "permissionProfile {\"type\":\"sandboxed-by-magic\"} is not one execgate knows",
            ),
            (
                json!({"permissionProfile": "workspace-write"}),
                "permissionProfile \"workspace-write\"",
            ),
            (
                json!({"sandboxPolicy": {"type": "yolo"}}),
                "unknown variant `yolo`",
            ),
            (
                json!({"sandboxPolicy": "read-only"}),
                "sandboxPolicy \"read-only\"",
            ),
            (
                json!({"sandboxPolicy": {"type": "workspace-write", "network_access": "yes"}}),
                "sandboxPolicy",
            ),
        ];
        for (value, want) in cases {
            let s = parse(value.clone());
            assert_eq!(s.policy, None, "{value}");
            let all = s.warnings.join("\n");
            assert!(all.contains(want), "{value}: {all}");
            assert!(
                all.contains("using the server's own sandbox"),
                "{value}: {all}"
            );
        }
        // A profile this server cannot read, with a legacy policy it can: the policy wins.
        let s = parse(
            json!({"permissionProfile": {"type": "new"}, "sandboxPolicy": {"type": "read-only"}}),
        );
        assert_eq!(s.policy, Some(SandboxPolicy::new(SandboxMode::ReadOnly)));
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        // A bad sandboxCwd is ignored, the rest applies.
        let s = parse(json!({"permissionProfile": {"type": "disabled"}, "sandboxCwd": 5}));
        assert_eq!(s.policy.unwrap().mode, SandboxMode::DangerFullAccess);
        assert!(s.warnings[0].contains("sandboxCwd is a number"));
    }
}
