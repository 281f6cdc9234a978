//! `execgate rules`: the effective rules, each with the file and line it came from, in the
//! order a session loads them (the admin layer first), then the `host_executable()`
//! definitions in force. Loads exactly what a session with the same flags loads, so what is
//! listed is what decides.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use policy::Decision;

use crate::session_args::PolicyArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    policy: PolicyArgs,

    /// Print JSON (one object: `sources`, `rules` with `file`/`line`/`layer`, and
    /// `hostExecutables`) instead of lines.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let policy = args.policy.load()?;
    let rules = policy.listed_rules();
    let hosts = policy.host_executables();
    let mut out = std::io::stdout().lock();
    if args.json {
        let rules: Vec<serde_json::Value> = rules
            .iter()
            .map(|r| {
                serde_json::json!({
                    "pattern": r.pattern,
                    "decision": r.decision,
                    "justification": r.justification,
                    "file": r.origin.as_ref().map(|o| o.file.display().to_string()),
                    "line": r.origin.as_ref().map(|o| o.line),
                    "layer": r.origin.as_ref().map_or(policy::Layer::User, |o| o.layer),
                })
            })
            .collect();
        let hosts: serde_json::Map<String, serde_json::Value> = hosts
            .iter()
            .map(|(name, paths)| (name.clone(), serde_json::json!(paths)))
            .collect();
        let json = serde_json::json!({
            "sources": policy.sources(),
            "rules": rules,
            "hostExecutables": hosts,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&json)?).context("writing to stdout")?;
        return Ok(ExitCode::SUCCESS);
    }
    if policy.sources().is_empty() {
        writeln!(out, "# no rules files: the heuristics decide every exec")?;
    }
    for source in policy.sources() {
        writeln!(out, "# loaded {}", source.display())?;
    }
    for rule in &rules {
        let place = match &rule.origin {
            Some(o) if o.layer == policy::Layer::Admin => {
                format!("{}:{} (admin)", o.file.display(), o.line)
            }
            Some(o) => format!("{}:{}", o.file.display(), o.line),
            None => "(built in)".to_owned(),
        };
        let mut call = format!(
            "prefix_rule(pattern={}, decision=\"{}\"",
            rule.pattern,
            decision_word(rule.decision)
        );
        if let Some(j) = &rule.justification {
            call.push_str(&format!(
                ", justification={}",
                serde_json::Value::from(j.as_str())
            ));
        }
        call.push(')');
        writeln!(out, "{place}: {call}")?;
    }
    for (name, paths) in &hosts {
        let paths: Vec<String> = paths
            .iter()
            .map(|p| format!("{:?}", p.display().to_string()))
            .collect();
        writeln!(
            out,
            "host_executable(name={name:?}, paths=[{}])",
            paths.join(", ")
        )?;
    }
    if policy.network_rule_count() > 0 {
        writeln!(
            out,
            "# and {} network_rule call(s), checked but not listed",
            policy.network_rule_count()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn decision_word(decision: Decision) -> &'static str {
    match decision {
        Decision::Allow => "allow",
        Decision::Prompt => "prompt",
        Decision::Forbidden => "forbidden",
    }
}
