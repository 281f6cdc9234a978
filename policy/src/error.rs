//! Why a policy could not be loaded. Every message is for a person editing a rules file:
//! it starts with `file:line:column` when the problem has a place in the file.

use std::fmt;
use std::path::PathBuf;

/// A place in a rules file, 1-based like editors and compilers print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLocation {
    /// The rules file, as it was given (or found) when loading.
    pub file: PathBuf,
    /// Line, starting at 1.
    pub line: u32,
    /// Column, starting at 1.
    pub column: u32,
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A rules file or directory that cannot become a policy. Loading stops at the first one:
/// a broken file never silently disables the policy.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A path given explicitly (`--rules PATH`) does not exist.
    #[error("{}: no such rules file or directory", .path.display())]
    NotFound {
        /// The missing path.
        path: PathBuf,
    },
    /// The file or directory exists but could not be read.
    #[error("{}: cannot read: {source}", .path.display())]
    Io {
        /// What was being read.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// Rules files are UTF-8 text.
    #[error("{}: not UTF-8 text (rules files are Starlark source in UTF-8)", .path.display())]
    NotUtf8 {
        /// The offending file.
        path: PathBuf,
    },
    /// A syntax error, a type error, or a rule whose arguments are wrong (bad decision,
    /// empty pattern, blank justification, ...).
    #[error("{location}: {message}")]
    Invalid {
        /// Where: the offending token, or the call whose arguments are wrong.
        location: SourceLocation,
        /// What was expected.
        message: String,
    },
    /// As [`LoadError::Invalid`], for the rare error the interpreter reports without a place.
    #[error("{}: {message}", .file.display())]
    InvalidUnlocated {
        /// The rules file.
        file: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A `match = [...]` example that the rule does not match.
    #[error("{location}: `match` example `{example}` does not match the rule's pattern {pattern}")]
    ExampleDidNotMatch {
        /// The `prefix_rule(...)` call.
        location: SourceLocation,
        /// The example, rendered as a shell command.
        example: String,
        /// The rule's pattern, as written in Starlark.
        pattern: String,
    },
    /// A `not_match = [...]` example that the rule matches.
    #[error("{location}: `not_match` example `{example}` matches the rule's pattern {pattern}")]
    ExampleDidMatch {
        /// The `prefix_rule(...)` call.
        location: SourceLocation,
        /// The example, rendered as a shell command.
        example: String,
        /// The rule's pattern, as written in Starlark.
        pattern: String,
    },
}

impl LoadError {
    /// The place in a rules file this error points at, when it has one.
    pub fn location(&self) -> Option<&SourceLocation> {
        match self {
            LoadError::Invalid { location, .. }
            | LoadError::ExampleDidNotMatch { location, .. }
            | LoadError::ExampleDidMatch { location, .. } => Some(location),
            _ => None,
        }
    }
}
