//! Login calls without approval fatigue: the user's start-up files run once per server, as
//! Codex's "shell snapshot" does, and every `login: true` call starts from what they set.
//!
//! The first login call takes the snapshot: `bash -lc CAPTURE` in that call's sandbox,
//! workdir and environment, where CAPTURE prints the exported variables, functions,
//! aliases, `shopt` and `set -o` options the profile left behind (builtins only, so the
//! profile's own execs are the only ones decided). A question the profile's execs raise is
//! denied without asking anybody (pyenv's `mkdir -p` under a prompt rule, say): the person is
//! asked about the agent's commands, not about their own start-up files; the first result's
//! warnings name what was denied. Each login call then runs `bash --noprofile -lc COMMAND`
//! (still a login shell, `$0` and the command string untouched) with `BASH_ENV` naming the
//! snapshot file, which unsets `BASH_ENV` before anything else so no child inherits it.
//!
//! A snapshot that cannot be taken (the start-up files fail, time out, print no snapshot)
//! leaves each login call as before (`bash -lc`), with a warning.
//!
//! The snapshot file sits in a private directory of the server. Only sandboxed shells read
//! it and everything it holds came from the user's own start-up files, so a session that
//! rewrote it would gain nothing it could not do in its own command.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use supervisor::approval::ApprovalFuture;
use supervisor::{Approval, ApprovalRequest, Approver, RanIn, SessionSpec, SessionStdio};

use crate::runner::Sessions;

/// The longest the start-up files may take, once.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(30);

/// The most a snapshot may print (functions of nvm and the like included).
const SNAPSHOT_MAX_BYTES: usize = 8 << 20;

const BEGIN: &str = "#@execgate-login-snapshot";
const FUNCTIONS: &str = "#@functions";
const ALIASES: &str = "#@aliases";
const OPTIONS: &str = "#@options";
const END: &str = "#@end";

/// Printed by the login shell after its start-up files ran. Builtins only.
fn capture_script() -> String {
    format!(
        r#"printf '\n%s\n' '{BEGIN}'
for __execgate_name in $(compgen -e); do
  case $__execgate_name in
    BASHOPTS|SHELLOPTS|BASH_VERSINFO|EUID|PPID|UID|SHLVL|PWD|OLDPWD|_|BASH_ENV) ;;
    *) declare -p "$__execgate_name" 2>/dev/null ;;
  esac
done
printf '%s\n' '{FUNCTIONS}'
declare -f
printf '%s\n' '{ALIASES}'
alias -p
printf '%s\n' '{OPTIONS}'
shopt -p
set +o
printf '%s\n' '{END}'
"#
    )
}

/// The snapshot file's text from what the capture printed: `None` without both markers.
/// `shopt` options bash refuses to set (`login_shell`, `restricted_shell`) are left out.
pub fn snapshot_from(stdout: &str) -> Option<String> {
    let start = stdout.rfind(&format!("\n{BEGIN}\n"))? + BEGIN.len() + 2;
    let end = start
        + stdout[start..].find(&format!("\n{END}\n")).or_else(|| {
            stdout[start..]
                .ends_with(&format!("\n{END}"))
                .then(|| stdout.len() - start - END.len() - 1)
        })?;
    let body = &stdout[start..end];
    let (vars_and_functions, options) = body.split_once(&format!("\n{OPTIONS}\n"))?;
    let options: Vec<&str> = options
        .lines()
        .filter(|l| !l.contains(" login_shell") && !l.contains(" restricted_shell"))
        .collect();
    let mut text = String::from(
        "# execgate: what the login start-up files set, taken once (see `login` in the README)\n\
         unset BASH_ENV\n",
    );
    for line in vars_and_functions.lines() {
        if line != FUNCTIONS && line != ALIASES {
            text.push_str(line);
            text.push('\n');
        }
    }
    for line in options {
        text.push_str(line);
        text.push('\n');
    }
    Some(text)
}

/// A snapshot taken: its file, and what the start-up files were refused.
#[derive(Debug)]
pub struct Taken {
    _dir: tempfile::TempDir,
    file: PathBuf,
    /// The start-up files' execs that were denied (a question nobody was asked, or a rule).
    pub denied: Vec<String>,
}

/// Denies every question of the snapshot session without asking anybody.
#[derive(Debug)]
struct NobodyAsked;

impl Approver for NobodyAsked {
    fn ask(&self, _request: ApprovalRequest) -> ApprovalFuture<'_> {
        Box::pin(async {
            Approval::Deny {
                reason: "asked while the login start-up files ran once for the snapshot; \
                         nobody is asked about those: denied"
                    .into(),
            }
        })
    }

    fn asks_a_person(&self) -> bool {
        false
    }
}

/// The server's one snapshot, taken by the first login call.
#[derive(Debug, Default)]
pub struct LoginSnapshot {
    taken: tokio::sync::OnceCell<Result<Arc<Taken>, String>>,
}

impl LoginSnapshot {
    /// The snapshot, taken now with `template`'s sandbox, workdir and environment if this
    /// is the first login call; `first` is true for the call that took it.
    pub async fn get(
        &self,
        sessions: &dyn Sessions,
        template: &SessionSpec,
    ) -> (Result<Arc<Taken>, String>, bool) {
        let mut first = false;
        let taken = self
            .taken
            .get_or_init(|| {
                first = true;
                take(sessions, template)
            })
            .await;
        (taken.clone(), first)
    }
}

async fn take(sessions: &dyn Sessions, template: &SessionSpec) -> Result<Arc<Taken>, String> {
    let spec = SessionSpec {
        argv: vec!["bash".into(), "-lc".into(), capture_script()],
        workdir: template.workdir.clone(),
        env: template.env.clone(),
        inherit_env: template.inherit_env,
        sandbox: template.sandbox.clone(),
        limits: template.limits,
        cgroup_limits: template.cgroup_limits,
        timeout: Some(SNAPSHOT_TIMEOUT),
        stdio: SessionStdio::Piped,
        approver: Arc::new(NobodyAsked),
    };
    let finished = sessions
        .run(spec, SNAPSHOT_MAX_BYTES)
        .await
        .map_err(|e| format!("the login start-up files could not run: {e}"))?;
    if finished.outcome.timed_out {
        return Err(format!(
            "the login start-up files took longer than {}s",
            SNAPSHOT_TIMEOUT.as_secs()
        ));
    }
    let text = snapshot_from(&finished.captured.stdout.text).ok_or_else(|| {
        format!(
            "the login start-up files left no snapshot (exit status {:?})",
            finished.outcome.status.code()
        )
    })?;
    let dir = tempfile::Builder::new()
        .prefix("execgate-login-")
        .tempdir()
        .map_err(|e| format!("no directory for the login snapshot: {e}"))?;
    let file = dir.path().join("snapshot.bash");
    std::fs::write(&file, text).map_err(|e| format!("writing the login snapshot: {e}"))?;
    let denied = finished
        .outcome
        .notable_execs
        .iter()
        .filter(|r| r.ran_in == RanIn::Denied)
        .map(|r| supervisor::shown(&r.argv))
        .collect();
    Ok(Arc::new(Taken {
        _dir: dir,
        file,
        denied,
    }))
}

/// Runs `spec`'s login shell (`bash -lc COMMAND`) from the snapshot instead of the start-up
/// files: `bash --noprofile -lc COMMAND` with `BASH_ENV` naming the snapshot.
pub fn apply(spec: &mut SessionSpec, taken: &Taken) {
    if spec.argv.len() == 3 && spec.argv[0] == "bash" && spec.argv[1] == "-lc" {
        spec.argv.insert(1, "--noprofile".into());
        spec.env.retain(|(name, _)| name != "BASH_ENV");
        spec.env
            .push(("BASH_ENV".into(), taken.file.to_string_lossy().into_owned()));
    }
}

/// The warnings a login call carries about the snapshot.
pub fn warnings(taken: &Result<Arc<Taken>, String>, first: bool) -> Vec<String> {
    match taken {
        Ok(taken) if first && !taken.denied.is_empty() => vec![format!(
            "the login start-up files ran once for this server (a snapshot every login call \
             starts from); nobody was asked about their execs, and these were denied: {}",
            taken.denied.join("; ")
        )],
        Ok(_) => Vec::new(),
        Err(why) if first => vec![format!(
            "{why}: login calls run the start-up files themselves (bash -lc), each time"
        )],
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_is_what_follows_the_last_marker() {
        let out = format!(
            "motd from the profile\n{BEGIN} not a marker\n\n{BEGIN}\ndeclare -x FOO=\"a\nb\"\n{FUNCTIONS}\n\
             greet () \n{{ \n    echo hi\n}}\n{ALIASES}\nalias ll='ls -l'\n{OPTIONS}\nshopt -u autocd\n\
             shopt -s login_shell\nshopt -u restricted_shell\nset +o errexit\n{END}\n"
        );
        assert_eq!(
            snapshot_from(&out).unwrap(),
            "# execgate: what the login start-up files set, taken once (see `login` in the README)\n\
             unset BASH_ENV\ndeclare -x FOO=\"a\nb\"\ngreet () \n{ \n    echo hi\n}\n\
             alias ll='ls -l'\nshopt -u autocd\nset +o errexit\n"
        );
        assert_eq!(snapshot_from("no markers\n"), None);
        assert_eq!(snapshot_from(&format!("\n{BEGIN}\nx\n")), None);
    }
}
