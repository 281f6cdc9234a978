//! The one way an execgate test skips: [`skip`] (or [`skip_unless!`]) prints
//! `SKIPPED: <test>: <why>` and returns; with `EXECGATE_REQUIRE_ALL=1` (scripts/test, and so
//! CI, which runs as root on x86_64 with the patched shells built) it panics instead, so a
//! missing prerequisite fails the run rather than letting a test pass without running.
//!
//! The only skips that stay skips under `EXECGATE_REQUIRE_ALL=1` are the ones CI cannot
//! satisfy by its nature, each named in [`Exempt`] with the reason. Everything else (root,
//! a kernel feature, a tool, the patched shells) is something CI provides, so its absence
//! there is a failure.
//!
//! `EXECGATE_REQUIRE_PATCHED_SHELLS=1` (also read by the MCP pytest suite) still works: it
//! makes the [`Need::PatchedShells`] skips fail, and only those.

use std::fmt;

/// Skips CI cannot satisfy by nature. This is the whole list: a skip not marked with one
/// of these fails under `EXECGATE_REQUIRE_ALL=1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exempt {
    /// The machine is not x86_64: the escalation hand-back rewrites registers (implemented
    /// for x86_64 only) and i386/x32 are x86_64's foreign ABIs. Running the suite on another
    /// architecture cannot provide them; it is not a missing package or privilege.
    NotX86_64,
}

impl Exempt {
    /// Why this skip is allowed even where every prerequisite is required.
    pub fn why(self) -> &'static str {
        match self {
            Exempt::NotX86_64 => {
                "exempt from EXECGATE_REQUIRE_ALL: an architecture property, not a missing prerequisite"
            }
        }
    }
}

/// What a skip is for, when it matters to the environment switches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Any prerequisite CI provides (root, a kernel feature, a tool on PATH).
    Any,
    /// The patched shells of `patches-fallback/build-shells` (also required by
    /// `EXECGATE_REQUIRE_PATCHED_SHELLS=1`).
    PatchedShells,
    /// Cannot be satisfied by CI by nature: never fails, says why.
    Exempt(Exempt),
}

/// Why a test cannot run here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    pub why: String,
    pub need: Need,
}

impl Skip {
    pub fn exempt(why: impl Into<String>, exempt: Exempt) -> Skip {
        Skip {
            why: why.into(),
            need: Need::Exempt(exempt),
        }
    }

    pub fn patched_shells(why: impl Into<String>) -> Skip {
        Skip {
            why: why.into(),
            need: Need::PatchedShells,
        }
    }
}

impl From<String> for Skip {
    fn from(why: String) -> Skip {
        Skip {
            why,
            need: Need::Any,
        }
    }
}

impl From<&str> for Skip {
    fn from(why: &str) -> Skip {
        Skip::from(why.to_owned())
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.why)?;
        if let Need::Exempt(e) = self.need {
            write!(f, " ({})", e.why())?;
        }
        Ok(())
    }
}

fn env_is_1(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| v == "1")
}

/// The running test's name: libtest runs each test on a thread named after it.
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("<unnamed test>")
        .to_owned()
}

/// Skips the running test: prints `SKIPPED: <test>: <why>`, or panics when the
/// environment requires the test to run (see the module docs). The caller returns after.
pub fn skip(why: impl Into<Skip>) {
    let skip = why.into();
    let test = current_test();
    let required = match skip.need {
        Need::Any => env_is_1("EXECGATE_REQUIRE_ALL").then_some("EXECGATE_REQUIRE_ALL=1"),
        Need::PatchedShells => env_is_1("EXECGATE_REQUIRE_ALL")
            .then_some("EXECGATE_REQUIRE_ALL=1")
            .or_else(|| {
                env_is_1("EXECGATE_REQUIRE_PATCHED_SHELLS")
                    .then_some("EXECGATE_REQUIRE_PATCHED_SHELLS=1")
            }),
        Need::Exempt(_) => None,
    };
    if let Some(setting) = required {
        panic!("{test} cannot run here and {setting} requires it to: {skip}");
    }
    eprintln!("SKIPPED: {test}: {skip}");
}

/// `skip_unless!(why_not)`: when `why_not` (an `Option` of anything `Into<Skip>`) is
/// `Some`, [`skip`] and return from the test.
#[macro_export]
macro_rules! skip_unless {
    ($why_not:expr) => {
        if let Some(why) = $why_not {
            $crate::skip(why);
            return;
        }
    };
}

/// `ok_or_skip!(result)`: the `Ok` value, or [`skip`] with the error and return.
#[macro_export]
macro_rules! ok_or_skip {
    ($result:expr) => {
        match $result {
            Ok(v) => v,
            Err(why) => {
                $crate::skip(why);
                return;
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_is_named_by_its_thread() {
        assert!(current_test().ends_with("the_test_is_named_by_its_thread"));
    }

    #[test]
    fn an_exempt_skip_says_why_it_is_exempt() {
        let s = Skip::exempt("no x86_64", Exempt::NotX86_64);
        assert!(
            s.to_string().contains("exempt from EXECGATE_REQUIRE_ALL"),
            "{s}"
        );
    }
}

/// A tiny deterministic generator (xorshift64*) for seeded random test cases: the same
/// cases on every run and every machine.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % u64::try_from(n.max(1)).unwrap_or(1)).unwrap_or(0)
    }

    /// One of `items` (which must not be empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}
