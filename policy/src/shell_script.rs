//! Splitting a `bash -c SCRIPT` into its commands, for the scripts simple enough to judge
//! without a shell: plain words (optionally quoted, no expansion of any kind) joined by
//! `&&`, `||`, `;`, `|` or newlines. Anything else (`$`, backquotes, redirections,
//! globs, subshells, `&`, keywords, assignments, escapes) is "not plain" and the script is
//! left to the default: what it runs is judged anyway, exec by exec, by the supervisor.

/// The commands of a plain script, in order; `None` if the script is not plain.
pub fn plain_commands(script: &str) -> Option<Vec<Vec<String>>> {
    let mut commands: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut chars = script.chars().peekable();
    // After `;` or a newline an empty command is fine (`a;` or a trailing newline), after
    // `&&`, `||` and `|` it is not.
    let mut needs_command = false;

    loop {
        // Skip blanks between words.
        while matches!(chars.peek(), Some(' ' | '\t')) {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        match c {
            ';' | '\n' => {
                chars.next();
                if current.is_empty() && needs_command {
                    return None;
                }
                if !current.is_empty() {
                    commands.push(std::mem::take(&mut current));
                }
                needs_command = false;
            }
            '&' | '|' => {
                chars.next();
                let doubled = chars.peek() == Some(&c);
                if c == '&' && !doubled {
                    return None; // background job
                }
                if doubled {
                    chars.next();
                }
                if current.is_empty() {
                    return None;
                }
                commands.push(std::mem::take(&mut current));
                needs_command = true;
            }
            _ => {
                let word = read_word(&mut chars)?;
                if current.is_empty() && !is_plain_command_name(&word) {
                    return None;
                }
                current.push(word);
            }
        }
    }
    if current.is_empty() {
        if needs_command {
            return None;
        }
    } else {
        commands.push(current);
    }
    if commands.is_empty() {
        return None;
    }
    Some(commands)
}

/// Characters that may appear unquoted in a plain word. `~` is let through: tilde
/// expansion changes an operand's text, never which program runs or with which options.
fn is_plain_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '_' | '.' | '/' | '=' | ':' | ',' | '+' | '@' | '%' | '^' | '~'
        )
}

fn read_word(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<String> {
    let mut word = String::new();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' | '\n' | ';' | '&' | '|' => break,
            '\'' => {
                chars.next();
                loop {
                    match chars.next()? {
                        '\'' => break,
                        inner => word.push(inner),
                    }
                }
            }
            '"' => {
                chars.next();
                loop {
                    match chars.next()? {
                        '"' => break,
                        '$' | '`' | '\\' | '!' => return None,
                        inner => word.push(inner),
                    }
                }
            }
            c if is_plain_char(c) => {
                word.push(c);
                chars.next();
            }
            _ => return None,
        }
    }
    Some(word)
}

/// The first word of a command must name a program: not an assignment (`A=b cmd`), not a
/// shell keyword or builtin that changes how what follows runs.
fn is_plain_command_name(word: &str) -> bool {
    !word.is_empty()
        && !word.contains('=')
        && !matches!(
            word,
            "if" | "then"
                | "else"
                | "elif"
                | "fi"
                | "for"
                | "while"
                | "until"
                | "do"
                | "done"
                | "case"
                | "esac"
                | "function"
                | "select"
                | "time"
                | "coproc"
                | "exec"
                | "eval"
                | "source"
                | "."
                | "builtin"
                | "command"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmds(script: &str) -> Option<Vec<Vec<String>>> {
        plain_commands(script)
    }

    fn owned(commands: &[&[&str]]) -> Option<Vec<Vec<String>>> {
        Some(
            commands
                .iter()
                .map(|c| c.iter().map(|w| w.to_string()).collect())
                .collect(),
        )
    }

    #[test]
    fn splits_plain_scripts_on_operators() {
        assert_eq!(
            cmds("ls -la && git status; cat a.txt | wc -l || echo 'no luck'"),
            owned(&[
                &["ls", "-la"],
                &["git", "status"],
                &["cat", "a.txt"],
                &["wc", "-l"],
                &["echo", "no luck"],
            ])
        );
        assert_eq!(cmds("echo \"a b\"c;\n"), owned(&[&["echo", "a bc"]]));
        assert_eq!(cmds("ls\npwd"), owned(&[&["ls"], &["pwd"]]));
    }

    #[test]
    fn anything_with_expansion_redirection_or_structure_is_not_plain() {
        for script in [
            "echo $HOME",
            "echo \"$HOME\"",
            "ls > out",
            "cat < in",
            "ls *.rs",
            "(ls)",
            "sleep 1 &",
            "FOO=1 ls",
            "for f in a; do echo $f; done",
            "echo `id`",
            "echo a\\ b",
            "ls &&",
            "&& ls",
            "ls | | wc",
            "echo 'unterminated",
            "",
            "   ",
            "eval ls",
        ] {
            assert_eq!(plain_commands(script), None, "script {script:?}");
        }
    }
}
