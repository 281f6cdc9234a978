//! The environment a session starts with: built on purpose, never execgate's own as is.
//!
//! By default a session gets execgate's environment minus every variable whose name looks
//! like a credential. The patterns are Codex's `shell_environment_policy` default excludes
//! (`*KEY*`, `*SECRET*`, `*TOKEN*`, case-insensitive) plus PASSWORD, PASSWD, CREDENTIAL,
//! AUTH, COOKIE and SESSION, which name credentials (or a way to one: `SSH_AUTH_SOCK`) just
//! as often. `--inherit-env core` starts from Codex's core set instead, `none` from nothing;
//! `--pass-env NAME` passes one variable whatever the rest says.

use std::ffi::OsString;

/// `--inherit-env`: the base a session's environment starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InheritEnv {
    /// Every variable of execgate's environment (credentials still left out).
    All,
    /// Only HOME, LOGNAME, PATH, SHELL, USER(NAME), the temporary directories, the locale
    /// and TERM (credentials still left out).
    Core,
    /// Nothing but what --pass-env names.
    None,
}

/// Codex's core set (`shell_environment_policy.inherit = "core"`), plus the locale and the
/// terminal type, without which programs print differently.
pub const CORE: &[&str] = &[
    "HOME", "LOGNAME", "PATH", "SHELL", "USER", "USERNAME", "TMPDIR", "TEMP", "TMP", "LANG",
    "LANGUAGE", "LC_ALL", "TERM",
];

/// A name containing one of these (any case) looks like a credential.
pub const CREDENTIAL_WORDS: &[&str] = &[
    "KEY",
    "SECRET",
    "TOKEN",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "AUTH",
    "COOKIE",
    "SESSION",
];

/// Whether `name` looks like it holds a credential.
pub fn looks_like_credential(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    CREDENTIAL_WORDS.iter().any(|word| upper.contains(word))
}

/// How a session's environment is built from execgate's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvPolicy {
    pub inherit: InheritEnv,
    /// Passed whatever `inherit` and the credential filter say.
    pub pass: Vec<String>,
}

impl EnvPolicy {
    /// The session's whole environment from `vars` (execgate's own). A variable whose name
    /// or value is not UTF-8 is left out (and logged).
    pub fn build(
        &self,
        vars: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Vec<(String, String)> {
        let mut env = Vec::new();
        for (name, value) in vars {
            let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
                tracing::debug!(name = ?name, "not passed to sessions: not UTF-8");
                continue;
            };
            let passed = self.pass.iter().any(|p| p == name);
            let in_base = match self.inherit {
                InheritEnv::All => true,
                InheritEnv::Core => CORE.contains(&name) || name.starts_with("LC_"),
                InheritEnv::None => false,
            };
            if passed || (in_base && !looks_like_credential(name)) {
                env.push((name.to_owned(), value.to_owned()));
            }
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn names(env: &[(String, String)]) -> Vec<&str> {
        env.iter().map(|(k, _)| k.as_str()).collect()
    }

    const SAMPLE: &[(&str, &str)] = &[
        ("PATH", "/usr/bin"),
        ("HOME", "/root"),
        ("LC_CTYPE", "C.UTF-8"),
        ("OPENAI_API_KEY", "s"),
        ("github_token", "s"),
        ("AWS_SECRET_ACCESS_KEY", "s"),
        ("PGPASSWORD", "s"),
        ("SSH_AUTH_SOCK", "/run/agent"),
        ("EDITOR", "vi"),
    ];

    #[test]
    fn all_minus_credentials_by_default() {
        let policy = EnvPolicy {
            inherit: InheritEnv::All,
            pass: Vec::new(),
        };
        assert_eq!(
            names(&policy.build(vars(SAMPLE))),
            ["PATH", "HOME", "LC_CTYPE", "EDITOR"]
        );
    }

    #[test]
    fn pass_env_names_one_credential() {
        let policy = EnvPolicy {
            inherit: InheritEnv::All,
            pass: vec!["OPENAI_API_KEY".into()],
        };
        assert_eq!(
            names(&policy.build(vars(SAMPLE))),
            ["PATH", "HOME", "LC_CTYPE", "OPENAI_API_KEY", "EDITOR"]
        );
    }

    #[test]
    fn core_and_none() {
        let core = EnvPolicy {
            inherit: InheritEnv::Core,
            pass: Vec::new(),
        };
        assert_eq!(
            names(&core.build(vars(SAMPLE))),
            ["PATH", "HOME", "LC_CTYPE"]
        );
        let none = EnvPolicy {
            inherit: InheritEnv::None,
            pass: vec!["EDITOR".into()],
        };
        assert_eq!(names(&none.build(vars(SAMPLE))), ["EDITOR"]);
    }

    #[test]
    fn credential_names_any_case() {
        for name in [
            "api_key",
            "MyToken",
            "DB_Passwd",
            "COOKIE_JAR",
            "XDG_SESSION_ID",
        ] {
            assert!(looks_like_credential(name), "{name}");
        }
        for name in ["PATH", "EDITOR", "LANG", "PWD"] {
            assert!(!looks_like_credential(name), "{name}");
        }
    }
}
