//! Output capture for one session: stdout, stderr and both interleaved, each bounded.
//!
//! A command may print far more than an agent can read (`yes`, a binary dumped to the
//! terminal). This module keeps the first and last bytes of each stream, up to a per-stream
//! cap, and says how much was cut. It never stops reading: a pipe that is not drained
//! blocks its writer, and a blocked child would turn a flood into a timeout. Memory stays at
//! about three caps per session whatever the command prints.
//!
//! Bytes that are not UTF-8 are replaced (U+FFFD) and the result says so; a cut never splits
//! a UTF-8 sequence into replacement characters.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

/// Read size for each pipe.
const CHUNK: usize = 256 * 1024;

/// The first and last bytes of a stream, with the count of what fell in between.
#[derive(Debug, Clone)]
pub struct HeadTail {
    head_cap: usize,
    tail_cap: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
}

impl HeadTail {
    /// Keeps at most `cap` bytes: the first half and the last half.
    pub fn new(cap: usize) -> Self {
        let head_cap = cap / 2;
        HeadTail {
            head_cap,
            tail_cap: cap - head_cap,
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
        }
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = self.head_cap - self.head.len();
        if room > 0 {
            let take = room.min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        if bytes.is_empty() || self.tail_cap == 0 {
            return;
        }
        if bytes.len() >= self.tail_cap {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.tail_cap..]);
        } else {
            let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.tail_cap);
            self.tail.drain(..overflow);
            self.tail.extend(bytes);
        }
    }

    /// Bytes seen so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes held (at most the cap).
    pub fn held(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// The text to show: everything, or head + marker + tail.
    pub fn finish(self) -> StreamText {
        let kept = self.held() as u64;
        let tail: Vec<u8> = self.tail.into();
        if kept == self.total {
            // Nothing was dropped: head and tail are contiguous.
            let mut all = self.head;
            all.extend_from_slice(&tail);
            let (text, lossy) = decode(all);
            return StreamText {
                text,
                total_bytes: self.total,
                cut_bytes: 0,
                lossy,
            };
        }
        let head = &self.head[..utf8_prefix_end(&self.head)];
        let tail = &tail[utf8_suffix_start(&tail)..];
        let cut = self.total - head.len() as u64 - tail.len() as u64;
        let (head_text, head_lossy) = decode(head.to_vec());
        let (tail_text, tail_lossy) = decode(tail.to_vec());
        let text = format!(
            "{head_text}\n[... execgate: {cut} bytes cut here; {total} bytes in all, over the \
             {cap}-byte cap, first and last kept ...]\n{tail_text}",
            total = self.total,
            cap = self.head_cap + self.tail_cap,
        );
        StreamText {
            text,
            total_bytes: self.total,
            cut_bytes: cut,
            lossy: head_lossy || tail_lossy,
        }
    }
}

/// `bytes` as text, without a copy when they are UTF-8; else with U+FFFD for what is not.
fn decode(bytes: Vec<u8>) -> (String, bool) {
    match String::from_utf8(bytes) {
        Ok(text) => (text, false),
        Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), true),
    }
}

/// Length of `bytes` without a UTF-8 sequence that the cut left incomplete at the end.
fn utf8_prefix_end(bytes: &[u8]) -> usize {
    // Look back at most 3 bytes for the lead byte of the last sequence.
    for back in 1..=bytes.len().min(4) {
        let i = bytes.len() - back;
        let b = bytes[i];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte
        }
        let need = match b {
            0x00..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return bytes.len(), // not a lead byte: invalid anyway, leave it
        };
        return if back < need { i } else { bytes.len() };
    }
    bytes.len()
}

/// Start of `bytes` past continuation bytes that the cut left orphaned at the beginning.
fn utf8_suffix_start(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take(3)
        .take_while(|b| *b & 0xC0 == 0x80)
        .count()
}

/// One stream as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamText {
    pub text: String,
    /// Everything the command wrote to this stream.
    pub total_bytes: u64,
    /// Bytes left out of `text` (0 when nothing was cut).
    pub cut_bytes: u64,
    /// True when bytes that are not UTF-8 were replaced by U+FFFD.
    pub lossy: bool,
}

/// What a session printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub stdout: StreamText,
    pub stderr: StreamText,
    /// Both streams in the order their bytes arrived, bounded like each stream: only when
    /// both were written to (else it is the one that was).
    pub output: Option<StreamText>,
}

/// Which stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// Pipe capacity asked for: a command printing megabytes then blocks (and wakes the
/// reader) once per this much, not once per 64 KiB, the kernel's default.
const PIPE_BYTES: usize = 1 << 20;

/// Turns a pipe's read end into an async reader, its capacity raised to [`PIPE_BYTES`]
/// where the kernel allows it (`/proc/sys/fs/pipe-max-size` bounds users without
/// CAP_SYS_RESOURCE; the default stays otherwise).
pub fn pipe_reader(fd: OwnedFd) -> std::io::Result<tokio::net::unix::pipe::Receiver> {
    let _ = rustix::pipe::fcntl_setpipe_size(&fd, PIPE_BYTES);
    tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
}

/// Reads both streams to EOF (or until `stop`), keeping at most `cap` bytes of each view.
///
/// `stop` ends the capture early with what was read so far: after the session ended, a
/// process that escaped the tree may still hold a pipe open, and the result must not wait
/// for it.
pub async fn capture<O, E>(
    stdout: Option<O>,
    stderr: Option<E>,
    cap: usize,
    stop: CancellationToken,
) -> Captured
where
    O: AsyncRead + Unpin,
    E: AsyncRead + Unpin,
{
    let mut out = HeadTail::new(cap);
    let mut err = HeadTail::new(cap);
    // Made when the second stream first writes, as a copy of the first: until then the
    // interleaved view is that stream. A command that writes to one stream (most) pays
    // for no third copy of its output.
    let mut both: Option<HeadTail> = None;
    let mut stdout = stdout;
    let mut stderr = stderr;
    // Filled through `read_buf`: never zeroed, and only the pages a read touches are
    // faulted in, so a command that prints nothing costs no buffer work.
    let mut out_buf = Vec::with_capacity(CHUNK);
    let mut err_buf = Vec::with_capacity(CHUNK);
    loop {
        if stdout.is_none() && stderr.is_none() {
            break;
        }
        let (stream, result) = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = read_opt(stdout.as_mut(), &mut out_buf) => (Stream::Stdout, r),
            r = read_opt(stderr.as_mut(), &mut err_buf) => (Stream::Stderr, r),
        };
        match result {
            Ok(n) if n > 0 => {
                let (view, other, bytes) = match stream {
                    Stream::Stdout => (&mut out, &err, &out_buf[..n]),
                    Stream::Stderr => (&mut err, &out, &err_buf[..n]),
                };
                view.push(bytes);
                if both.is_none() && other.total() > 0 {
                    both = Some(other.clone());
                }
                if let Some(both) = &mut both {
                    both.push(bytes);
                }
            }
            // EOF, or a read error (the pipe is gone): this stream is done.
            Ok(_) | Err(_) => match stream {
                Stream::Stdout => stdout = None,
                Stream::Stderr => stderr = None,
            },
        }
    }
    Captured {
        stdout: out.finish(),
        stderr: err.finish(),
        output: both.map(HeadTail::finish),
    }
}

/// Reads into the emptied `buf` from `reader`, or waits forever when there is none (a
/// closed stream). Cancel-safe, like `read_buf`.
async fn read_opt<R: AsyncRead + Unpin>(
    reader: Option<&mut R>,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    match reader {
        Some(r) => {
            buf.clear();
            r.read_buf(buf).await
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn finish(cap: usize, chunks: &[&[u8]]) -> StreamText {
        let mut h = HeadTail::new(cap);
        for c in chunks {
            h.push(c);
            assert!(h.held() <= cap, "holds {} > cap {cap}", h.held());
        }
        h.finish()
    }

    #[test]
    fn under_the_cap_everything_is_kept() {
        let t = finish(10, &[b"abc", b"defg", b"hij"]);
        assert_eq!(t.text, "abcdefghij");
        assert_eq!((t.total_bytes, t.cut_bytes, t.lossy), (10, 0, false));
    }

    #[test]
    fn over_the_cap_head_and_tail_are_kept_and_the_cut_is_counted() {
        let t = finish(10, &[b"0123456789", b"abcdefghij", b"ABCDE"]);
        // head = first 5, tail = last 5
        assert!(
            t.text.starts_with("01234\n[... execgate: 15 bytes cut"),
            "{}",
            t.text
        );
        assert!(t.text.ends_with("...]\nABCDE"), "{}", t.text);
        assert_eq!((t.total_bytes, t.cut_bytes), (25, 15));
    }

    #[test]
    fn tail_follows_many_small_pushes() {
        let mut h = HeadTail::new(8);
        for b in b"abcdefghijklmnopqrstuvwxyz" {
            h.push(&[*b]);
        }
        let t = h.finish();
        assert!(t.text.starts_with("abcd\n"), "{}", t.text);
        assert!(t.text.ends_with("\nwxyz"), "{}", t.text);
        assert_eq!(t.cut_bytes, 18);
    }

    #[test]
    fn a_chunk_larger_than_the_tail_replaces_it() {
        let t = finish(4, &[b"ab", b"cdefghijkl"]);
        // head "ab", tail "kl"
        assert!(
            t.text.starts_with("ab\n") && t.text.ends_with("\nkl"),
            "{}",
            t.text
        );
        assert_eq!(t.cut_bytes, 8);
    }

    #[test]
    fn exactly_the_cap_is_not_cut() {
        let t = finish(6, &[b"abc", b"def"]);
        assert_eq!(t.text, "abcdef");
        assert_eq!(t.cut_bytes, 0);
    }

    #[test]
    fn zero_cap_keeps_nothing_but_counts() {
        let t = finish(0, &[b"abc"]);
        assert_eq!((t.total_bytes, t.cut_bytes), (3, 3));
        assert!(t.text.contains("3 bytes cut"));
    }

    #[test]
    fn cuts_do_not_split_utf8_sequences() {
        // "é" is 2 bytes, "€" is 3: cut inside each at the head end and the tail start.
        let s = "aé€€€€€€€€€€€€€€€€€€€€€€€€€€€é";
        let t = finish(6, &[s.as_bytes()]);
        assert!(!t.lossy, "{t:?}");
        assert!(!t.text.contains('\u{FFFD}'), "{}", t.text);
        assert!(t.text.starts_with("aé\n"), "{}", t.text);
        // The 3-byte tail held the last byte of a "€" and the "é": only "é" is shown.
        assert!(t.text.ends_with("\né"), "{}", t.text);
        assert_eq!(t.total_bytes - t.cut_bytes, "aéé".len() as u64);
    }

    #[test]
    fn invalid_utf8_is_replaced_and_reported() {
        let t = finish(100, &[b"ok \xff\xfe binary \x00 end"]);
        assert!(t.lossy);
        assert!(
            t.text.contains('\u{FFFD}') && t.text.contains("\0"),
            "{:?}",
            t.text
        );
        assert_eq!(t.total_bytes, 18);
    }

    #[test]
    fn utf8_boundary_helpers() {
        assert_eq!(utf8_prefix_end(b""), 0);
        assert_eq!(utf8_prefix_end(b"ab"), 2);
        assert_eq!(utf8_prefix_end("a€".as_bytes()), 4);
        assert_eq!(utf8_prefix_end(&"a€".as_bytes()[..3]), 1);
        assert_eq!(utf8_prefix_end(&"a😀".as_bytes()[..4]), 1);
        assert_eq!(utf8_prefix_end(b"a\xff"), 2);
        assert_eq!(utf8_suffix_start(&"€b".as_bytes()[1..]), 2);
        assert_eq!(utf8_suffix_start(b"\x80\x80\x80\x80"), 3);
        assert_eq!(utf8_suffix_start(b"abc"), 0);
    }

    /// A capture of two fresh pipes with a 1 KiB cap, and the pipes' write ends.
    fn capture_two() -> (
        tokio::net::unix::pipe::Sender,
        tokio::net::unix::pipe::Sender,
        tokio::task::JoinHandle<Captured>,
    ) {
        let (out_tx, out_rx) = tokio::net::unix::pipe::pipe().unwrap();
        let (err_tx, err_rx) = tokio::net::unix::pipe::pipe().unwrap();
        let task = tokio::spawn(capture(
            Some(out_rx),
            Some(err_rx),
            1024,
            CancellationToken::new(),
        ));
        (out_tx, err_tx, task)
    }

    #[tokio::test]
    async fn captures_both_pipes_in_arrival_order() {
        let (mut out_tx, mut err_tx, task) = capture_two();
        out_tx.write_all(b"one\n").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        err_tx.write_all(b"two\n").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        out_tx.write_all(b"three\n").await.unwrap();
        drop((out_tx, err_tx));
        let c = task.await.unwrap();
        assert_eq!(c.stdout.text, "one\nthree\n");
        assert_eq!(c.stderr.text, "two\n");
        assert_eq!(c.output.unwrap().text, "one\ntwo\nthree\n");
    }

    #[tokio::test]
    async fn the_interleaved_view_made_late_is_the_same_as_one_fed_from_the_start() {
        let (mut out_tx, mut err_tx, task) = capture_two();
        // stdout alone first, past the cap; then stderr; then both again.
        let chunks: [(bool, Vec<u8>); 4] = [
            (true, (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect()),
            (false, b"first error\n".to_vec()),
            (true, b"more out\n".to_vec()),
            (false, b"last error\n".to_vec()),
        ];
        let mut eager = HeadTail::new(1024);
        for (to_stdout, bytes) in &chunks {
            if *to_stdout {
                out_tx.write_all(bytes).await.unwrap();
            } else {
                err_tx.write_all(bytes).await.unwrap();
            }
            eager.push(bytes);
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        }
        drop((out_tx, err_tx));
        let c = task.await.unwrap();
        assert_eq!(c.output.unwrap(), eager.finish());
    }

    #[tokio::test]
    async fn the_capture_s_pipes_hold_a_megabyte() {
        let (rx, tx) = std::io::pipe().unwrap();
        let reader = pipe_reader(OwnedFd::from(rx)).unwrap();
        let size = rustix::pipe::fcntl_getpipe_size(&reader).unwrap();
        let max: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Root may go past pipe-max-size; anyone may go up to it.
        let root = rustix::process::geteuid().is_root();
        assert!(
            size >= PIPE_BYTES || (!root && size >= max.min(PIPE_BYTES)),
            "{size}"
        );
        drop(tx);
    }

    #[tokio::test]
    async fn a_flood_is_drained_with_bounded_memory() {
        let (mut tx, rx) = tokio::net::unix::pipe::pipe().unwrap();
        let cap = 64 * 1024;
        let task = tokio::spawn(capture(
            Some(rx),
            None::<tokio::net::unix::pipe::Receiver>,
            cap,
            CancellationToken::new(),
        ));
        // 64 MiB: the writer would block forever if the capture stopped reading.
        let chunk = vec![b'y'; 1 << 20];
        for _ in 0..64 {
            tx.write_all(&chunk).await.unwrap();
        }
        drop(tx);
        let c = task.await.unwrap();
        assert_eq!(c.stdout.total_bytes, 64 << 20);
        assert_eq!(c.stdout.cut_bytes, (64 << 20) - cap as u64);
        assert!(c.stdout.text.len() < cap + 200);
        assert!(c.output.is_none(), "one stream: no interleaved copy");
    }

    #[tokio::test]
    async fn stop_returns_what_was_read_while_a_pipe_stays_open() {
        let (mut tx, rx) = tokio::net::unix::pipe::pipe().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(capture(
            Some(rx),
            None::<tokio::net::unix::pipe::Receiver>,
            1024,
            stop.clone(),
        ));
        tx.write_all(b"partial").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        stop.cancel();
        let c = task.await.unwrap();
        assert_eq!(c.stdout.text, "partial");
        drop(tx);
    }

    #[tokio::test]
    async fn no_streams_is_empty() {
        let c = capture(
            None::<tokio::net::unix::pipe::Receiver>,
            None::<tokio::net::unix::pipe::Receiver>,
            16,
            CancellationToken::new(),
        )
        .await;
        assert!(c.output.is_none());
        assert_eq!(c.stdout.text, "");
    }
}
