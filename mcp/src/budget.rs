//! One byte budget for a whole `shell` response.
//!
//! Clients read a response as one line and cap it (the TypeScript SDKs close the
//! connection past 10 MiB). The capture caps each stream in raw bytes, but what is sent is
//! larger: invalid bytes become U+FFFD (3 bytes each), control characters become `\u00XX`
//! escapes, there can be three texts (stdout, stderr, and both interleaved when both were
//! written), and beside `structuredContent` goes a text block ([`ShellResult::text`],
//! with at most [`crate::shell::TEXT_OUTPUT_BYTES`] of output). So the budget is counted
//! here on the serialized response, every field and the text block, and the texts (then,
//! if need be, the `execs` list) are cut until it fits: head and tail kept, the cut
//! marked, the result's `warnings` saying so.

use rmcp::model::{CallToolResult, ContentBlock};

use crate::shell::{ExecReport, ShellResult, TEXT_OUTPUT_BYTES};

/// Default budget: far under every common client's line limit (10 MiB in the TypeScript
/// SDKs), and still a lot of output for a model to read.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 2 << 20;

/// The smallest budget accepted: room for a result's fixed fields with a little output.
pub const MIN_MAX_RESPONSE_BYTES: usize = 16 << 10;

/// Room left for each cut marker and the JSON around the texts.
const MARKER_ROOM: usize = 512;

/// The result as it goes to the client: `structuredContent`, and beside it the short
/// plain [`ShellResult::text`] as the one text block.
///
/// Not the JSON text of the result, which MCP suggests for clients that predate
/// structured content: the clients that give a model tool results (Codex, Claude Code,
/// VS Code, Copilot) give it `structuredContent` alone when there is one, so a second copy
/// of the output would double every large response for nobody.
pub fn call_result(result: &ShellResult) -> Result<CallToolResult, serde_json::Error> {
    let mut call = CallToolResult::success(vec![ContentBlock::text(result.text())]);
    call.structured_content = Some(serde_json::to_value(result)?);
    Ok(call)
}

/// Bytes of the serialized [`call_result`] of `result`, counted without building its
/// `structuredContent`: the result's JSON, the text block as a JSON string, and the
/// envelope around them. [`fit`] calls this for every attempt, on results of megabytes.
pub fn serialized_len(result: &ShellResult) -> usize {
    let mut count = Count::default();
    if serde_json::to_writer(&mut count, result).is_err() {
        return usize::MAX;
    }
    let text = serde_json::to_string(&result.text()).map_or(usize::MAX / 2, |t| t.len());
    envelope_len() + count.bytes + text
}

/// Bytes of a [`call_result`] besides the result's JSON and the text block's string.
fn envelope_len() -> usize {
    static LEN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LEN.get_or_init(|| {
        let mut empty = CallToolResult::success(vec![ContentBlock::text("")]);
        empty.structured_content = Some(serde_json::json!({}));
        // Minus `{}` as structuredContent and `""` as the text.
        serde_json::to_vec(&empty).map_or(0, |v| v.len().saturating_sub(4))
    })
}

/// A writer that only counts bytes.
#[derive(Default)]
struct Count {
    bytes: usize,
}

impl std::io::Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Cuts `result` until its serialized [`call_result`] is at most `budget` bytes.
pub fn fit(result: &mut ShellResult, budget: usize) {
    let budget = budget.max(MIN_MAX_RESPONSE_BYTES);
    // Every byte of the texts is at least a byte of the response: past that bound the
    // whole result (megabytes) need not be serialized to know it is over.
    let output_len = result.output.as_ref().map_or(0, String::len);
    let texts_floor = result.stdout.len() + result.stderr.len() + output_len;
    let had_output = result.output.is_some();
    let mut texts = take_texts(result);
    let costs = texts.each_ref().map(|t| cost(t));
    if texts_floor <= budget {
        // Under a bound first, without serializing the megabytes: the rest of the result
        // serialized (its text block without output), each text's exact cost (a table
        // lookup per byte), and the text block's share of output at its worst escaping.
        let shown = texts.iter().map(String::len).max().unwrap_or(0);
        let bound = serialized_len(result)
            + costs.iter().sum::<usize>()
            + 6 * TEXT_OUTPUT_BYTES.min(shown)
            + MARKER_ROOM;
        put_texts(result, texts, had_output);
        if bound <= budget || serialized_len(result) <= budget {
            return;
        }
        texts = take_texts(result);
    }
    // The fields besides the texts get at most half the budget.
    fit_execs(result, budget / 2);
    let fixed = serialized_len(result);
    let capped = [
        result.streams.stdout.cut_bytes,
        result.streams.stderr.cut_bytes,
        result.streams.output.as_ref().map_or(0, |o| o.cut_bytes),
    ];
    let mut available = budget.saturating_sub(fixed + 3 * MARKER_ROOM);
    for _ in 0..8 {
        let shares = water_fill(costs, available);
        let mut cut = [0u64; 3];
        let [out, err, both] = std::array::from_fn(|i| {
            let (text, removed) = cut_to_cost(&texts[i], costs[i], shares[i], budget, capped[i]);
            cut[i] = removed;
            text
        });
        result.stdout = out;
        result.stderr = err;
        result.output = had_output.then_some(both);
        result.streams.stdout.budget_cut_bytes = cut[0];
        result.streams.stderr.budget_cut_bytes = cut[1];
        if let Some(output) = &mut result.streams.output {
            output.budget_cut_bytes = cut[2];
        }
        let size = serialized_len(result);
        if size <= budget {
            break;
        }
        // Markers and rounding took more than planned: shrink by the excess and retry.
        available = available.saturating_sub((size - budget) + budget / 64);
    }
    result.warnings.push(format!(
        "the result was over the {budget}-byte response budget (counted on the whole JSON \
         response): its output texts were cut further, head and tail kept (see \
         streams.*.budget_cut_bytes)"
    ));
}

/// Takes stdout, stderr and output (empty when absent) out of `result`.
fn take_texts(result: &mut ShellResult) -> [String; 3] {
    [
        std::mem::take(&mut result.stdout),
        std::mem::take(&mut result.stderr),
        result.output.take().unwrap_or_default(),
    ]
}

/// Puts back what [`take_texts`] took.
fn put_texts(result: &mut ShellResult, [out, err, both]: [String; 3], had_output: bool) {
    result.stdout = out;
    result.stderr = err;
    result.output = had_output.then_some(both);
}

/// Longest error message sent: errors quote what the client sent (a tool name, a serde
/// error naming a wrong value), which may be megabytes.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1024;

/// `message` cut to [`MAX_ERROR_MESSAGE_BYTES`] (at a character boundary), the cut marked.
pub fn clip(message: &str) -> String {
    if message.len() <= MAX_ERROR_MESSAGE_BYTES {
        return message.to_owned();
    }
    let end = crate::shell::floor_boundary(message, MAX_ERROR_MESSAGE_BYTES);
    format!(
        "{}[... {} more bytes of this message cut]",
        &message[..end],
        message.len() - end
    )
}

/// Drops `execs` from the middle (first and last kept), then shortens what is left, until
/// the result without its texts is within `limit`.
fn fit_execs(result: &mut ShellResult, limit: usize) {
    let before = result.execs.len();
    while serialized_len(result) > limit && result.execs.len() > 2 {
        let keep = result.execs.len() / 2;
        let drop = result.execs.len() - keep;
        let start = keep / 2;
        result.execs.drain(start..start + drop);
    }
    if result.execs.len() < before {
        result.warnings.push(format!(
            "{} of {before} execs were left out of `execs` (the middle ones) to stay within the \
             response budget",
            before - result.execs.len()
        ));
    }
    if serialized_len(result) > limit {
        for exec in &mut result.execs {
            shorten_exec(exec);
        }
        result.warnings.push(
            "long arguments and reasons in `execs` were shortened to stay within the response \
             budget"
                .to_owned(),
        );
    }
}

fn shorten_exec(exec: &mut ExecReport) {
    const KEEP: usize = 256;
    let shorten = |s: &mut String| {
        if let std::borrow::Cow::Owned(short) = crate::shell::head(s, KEEP) {
            *s = short;
        }
    };
    if exec.argv.len() > 64 {
        let cut = exec.argv.len() - 64;
        exec.argv.truncate(64);
        exec.argv.push(format!("[... {cut} more arguments cut]"));
    }
    exec.argv.iter_mut().for_each(shorten);
    exec.rules.truncate(16);
    exec.rules.iter_mut().for_each(shorten);
    shorten(&mut exec.program);
    shorten(&mut exec.cwd);
    shorten(&mut exec.reason);
}

/// Bytes `c` takes in `structuredContent`, escaped as a JSON string.
fn char_cost(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if u32::from(c) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Bytes `text` takes in `structuredContent`, as [`char_cost`] says (a character of
/// several bytes costs its bytes). Branch-free comparisons per byte, counted in `u8` over
/// blocks of 255 bytes, which the compiler turns into 16-byte vector code: this runs over
/// every megabyte a command prints.
pub fn cost(text: &str) -> usize {
    let mut extra = 0usize;
    for block in text.as_bytes().chunks(255) {
        let (mut escaped, mut long) = (0u8, 0u8);
        for &b in block {
            let short = (b == b'\n') | (b == b'\r') | (b == b'\t') | (b == 0x08) | (b == 0x0c);
            escaped += u8::from((b == b'"') | (b == b'\\') | short);
            long += u8::from((b < 0x20) & !short);
        }
        extra += usize::from(escaped) + 5 * usize::from(long);
    }
    text.len() + extra
}

/// Shares of `available` for texts costing `costs`: a text that needs less than an even
/// share keeps all of it, and what it leaves goes to the others.
fn water_fill(costs: [usize; 3], available: usize) -> [usize; 3] {
    let mut order = [0, 1, 2];
    order.sort_by_key(|&i| costs[i]);
    let mut shares = [0; 3];
    let mut left = available;
    for (n, &i) in order.iter().enumerate() {
        let even = left / (3 - n);
        shares[i] = costs[i].min(even);
        left -= shares[i];
    }
    shares
}

/// `text` within `share` bytes of response: its head and tail, with a marker where the
/// middle was cut. Returns the text and how many of its bytes were left out. `whole`:
/// [`cost`] of `text`, counted once by the caller.
///
/// `capped`: bytes the output cap already cut from this stream. Its marker sits in the
/// middle of the text, so this cut usually takes it: the new marker then says those too,
/// or the reader would take the gap for this cut alone.
fn cut_to_cost(
    text: &str,
    whole: usize,
    share: usize,
    budget: usize,
    capped: u64,
) -> (String, u64) {
    if whole <= share {
        return (text.to_owned(), 0);
    }
    let half = share / 2;
    let mut spent = 0;
    let head_end = text
        .char_indices()
        .find(|(_, c)| {
            spent += char_cost(*c);
            spent > half
        })
        .map_or(text.len(), |(i, _)| i);
    let mut spent = 0;
    let tail_start = text[head_end..]
        .char_indices()
        .rev()
        .find(|(_, c)| {
            spent += char_cost(*c);
            spent > share - half
        })
        .map_or(head_end, |(i, c)| head_end + i + c.len_utf8());
    let removed = tail_start - head_end;
    let besides = if capped > 0 && text[head_end..tail_start].contains("\n[... execgate: ") {
        format!(", besides the {capped} bytes the output cap cut here")
    } else {
        String::new()
    };
    let text = format!(
        "{}\n[... execgate: {removed} more bytes cut here to keep the whole response within \
         its {budget}-byte budget{besides} ...]\n{}",
        &text[..head_end],
        &text[tail_start..]
    );
    (text, removed as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_counts_the_text_as_serde_json_writes_it() {
        for s in [
            "plain",
            "quo\"te",
            "back\\slash",
            "new\nline",
            "ctl\u{1}\u{7f}",
            "é€😀\u{FFFD}",
        ] {
            let once = serde_json::to_string(s).unwrap();
            // Minus the quotes around the string.
            assert_eq!(cost(s), once.len() - 2, "{s:?}");
        }
    }

    #[test]
    fn cost_is_char_cost() {
        for c in (0..0x80u32).chain([0xe9, 0x20ac, 0x1f600, 0xfffd]) {
            let c = char::from_u32(c).unwrap();
            assert_eq!(cost(c.encode_utf8(&mut [0; 4])), char_cost(c), "{c:?}");
        }
    }

    /// A result as the server sent it (with a denied exec: quotes in its reason).
    fn sample() -> ShellResult {
        serde_json::from_str(
            r#"{"duration_ms": 51, "execs": [{"argv": ["rm", "-rf", "/x \"y\""],
            "asked_human": false, "cwd": "/tmp", "decided_by": "supervisor",
            "decision": "prompt", "exit_code": null, "program": "/usr/bin/rm",
            "ran_in": "denied", "reason": "nobody can be asked: denied", "rules": []}],
            "exit_code": 0, "output": "", "sandbox": {"bounding_set_dropped": true,
            "capabilities_dropped": true, "enforcement": "landlock: full (ABI 6)",
            "landlock_abi": 6, "level": "full", "missing": [], "mode": "workspace-write",
            "namespaces": ["pid", "mount"], "network": false, "pid_namespace": true,
            "read_only_inside_roots": ["/w/.git/config"], "source": "command-line",
            "unix_sockets": "decided", "writable_roots": ["/tmp", "/w"]}, "signal": null,
            "stderr": "", "stdout": "", "streams": {"output": {"budget_cut_bytes": 0,
            "cut_bytes": 0, "lossy": false, "total_bytes": 227}, "stderr": {"budget_cut_bytes":
            0, "cut_bytes": 0, "lossy": false, "total_bytes": 224}, "stdout":
            {"budget_cut_bytes": 0, "cut_bytes": 0, "lossy": false, "total_bytes": 3}},
            "timed_out": false, "warnings": ["a \\ b"]}"#,
        )
        .unwrap()
    }

    #[test]
    fn serialized_len_is_the_length_of_what_is_sent() {
        let mut result = sample();
        for (out, err) in [
            ("", ""),
            ("plain\n", "quo\"te \\ back"),
            ("ctl\u{1}\u{7f} é€😀\u{FFFD}", "\t\r\u{8}\u{c}"),
            // Past the text block's share of output: its head and tail only.
            ("wide €\"\n", ""),
        ] {
            result.stdout = out.repeat(5000);
            result.stderr = err.to_owned();
            result.output = (!err.is_empty()).then(|| format!("{}{err}", result.stdout));
            let sent = serde_json::to_vec(&call_result(&result).unwrap()).unwrap();
            assert_eq!(serialized_len(&result), sent.len(), "{out:?} {err:?}");
        }
    }

    #[test]
    fn a_megabyte_of_stdout_goes_once_and_whole_within_the_default_budget() {
        let mut result = sample();
        result.stdout = "a".repeat(1 << 20);
        result.output = None;
        result.streams.output = None;
        fit(&mut result, DEFAULT_MAX_RESPONSE_BYTES);
        assert_eq!(result.stdout.len(), 1 << 20, "cut: {:?}", result.warnings);
        let sent = serde_json::to_vec(&call_result(&result).unwrap()).unwrap();
        // The megabyte once, the text block's share of it, and the fields.
        assert!(
            sent.len() < (1 << 20) + crate::shell::TEXT_OUTPUT_BYTES + 4096,
            "{}",
            sent.len()
        );
        let sent: serde_json::Value = serde_json::from_slice(&sent).unwrap();
        assert_eq!(
            sent["structuredContent"]["stdout"].as_str().unwrap().len(),
            1 << 20
        );
        assert!(sent["structuredContent"].get("output").is_none());
        let text = sent["content"][0]["text"].as_str().unwrap();
        assert!(
            text.starts_with("Exit code: 0\nWall time: 51 ms\n"),
            "{text}"
        );
        assert!(
            text.contains("Denied: rm -rf /x \"y\": nobody can be asked"),
            "{text}"
        );
        assert!(text.contains("bytes left out of this text"), "{text}");
        assert!(
            text.len() < crate::shell::TEXT_OUTPUT_BYTES + 1024,
            "{}",
            text.len()
        );
    }

    #[test]
    fn a_small_budget_cuts_the_structured_texts_and_the_text_block_follows() {
        let mut result = sample();
        result.stdout = "o".repeat(300_000);
        result.stderr = "e".repeat(300_000);
        result.output = Some(format!("{}{}", result.stdout, result.stderr));
        fit(&mut result, MIN_MAX_RESPONSE_BYTES);
        let sent = serde_json::to_vec(&call_result(&result).unwrap()).unwrap();
        assert!(sent.len() <= MIN_MAX_RESPONSE_BYTES, "{}", sent.len());
        let output = result.output.as_deref().unwrap();
        assert!(output.starts_with('o') && output.ends_with('e'), "{output}");
        assert!(result.streams.output.as_ref().unwrap().budget_cut_bytes > 0);
    }

    #[test]
    fn long_messages_are_clipped_at_a_character() {
        assert_eq!(clip("short"), "short");
        let long = format!("a{}", "€".repeat(2000));
        let clipped = clip(&long);
        assert!(
            clipped.len() < MAX_ERROR_MESSAGE_BYTES + 64,
            "{}",
            clipped.len()
        );
        assert!(
            clipped.ends_with("more bytes of this message cut]"),
            "{clipped}"
        );
    }

    #[test]
    fn water_fill_gives_what_small_texts_leave_to_big_ones() {
        assert_eq!(water_fill([10, 1000, 1000], 610), [10, 300, 300]);
        assert_eq!(water_fill([10, 20, 30], 1000), [10, 20, 30]);
        assert_eq!(water_fill([0, 0, 900], 300), [0, 0, 300]);
    }

    #[test]
    fn a_cut_keeps_head_and_tail_within_the_share() {
        let text = format!("HEAD{}TAIL", "\u{1}".repeat(10_000));
        let (cut, removed) = cut_to_cost(&text, cost(&text), 200, 1 << 20, 0);
        assert!(cut.starts_with("HEAD") && cut.ends_with("TAIL"), "{cut}");
        assert!(
            cut.contains(&format!("[... execgate: {removed} more bytes")),
            "{cut}"
        );
        let kept: String = cut.lines().filter(|l| !l.contains("execgate")).collect();
        assert!(cost(&kept) <= 200, "{}", cost(&kept));
        assert_eq!(removed + kept.len() as u64, text.len() as u64);
        // Never inside a character.
        let (cut, _) = cut_to_cost(&"€".repeat(1000), cost(&"€".repeat(1000)), 100, 1 << 20, 0);
        assert!(cut.starts_with('€') && cut.ends_with('€'));
    }

    #[test]
    fn a_cut_that_takes_the_caps_marker_says_what_the_cap_cut() {
        let capped = format!(
            "{}\n[... execgate: 9000 bytes cut here; 11000 bytes in all, over the 2000-byte \
             cap, first and last kept ...]\n{}",
            "h".repeat(1000),
            "t".repeat(1000)
        );
        let (cut, removed) = cut_to_cost(&capped, cost(&capped), 400, 1 << 20, 9000);
        assert!(cut.starts_with('h') && cut.ends_with('t'), "{cut}");
        assert!(
            cut.contains(&format!(
                "{removed} more bytes cut here to keep the whole response within its \
                 1048576-byte budget, besides the 9000 bytes the output cap cut here ...]"
            )),
            "{cut}"
        );
        // A text the cap did not cut, or a cut that leaves the cap's marker: no such words.
        let off_centre = format!(
            "{}\n[... execgate: 9000 bytes cut here ...]\n{}",
            "h".repeat(10),
            "t".repeat(5000)
        );
        let (cut, _) = cut_to_cost(&"x".repeat(3000), cost(&"x".repeat(3000)), 400, 1 << 20, 0);
        assert!(!cut.contains("besides"), "{cut}");
        let (cut, _) = cut_to_cost(&off_centre, cost(&off_centre), 1000, 1 << 20, 9000);
        assert!(cut.contains("9000 bytes cut here ...]"), "{cut}");
        assert!(!cut.contains("besides"), "{cut}");
    }
}
