//! Reading a paused process's memory: the exec's path, argv and envp ([`ExecRequest`]).
//!
//! `process_vm_readv` never crashes the reader: a bad pointer from the child is `EFAULT`
//! here, and becomes an `EFAULT` answer to the exec. Where a container profile blocks
//! `process_vm_readv` (Docker's default allows it only with `CAP_SYS_PTRACE`), `pread` on
//! `/proc/PID/mem` reads the same bytes under the same ptrace access check ([`MemoryAccess`],
//! decided once at start-up); an unmapped address is `EIO` there, reported as the same fault. Reads are bounded (one string at most
//! `MAX_ARG_STRLEN`, all strings together at most [`MAX_TOTAL`]), and never cross a page
//! boundary they do not need to, so a string that ends just before an unmapped page reads.
//!
//! Owns: reading a paused process's memory (`process_vm_readv`, `/proc/PID/mem`). Must never
//! write to it, and never trust what it read beyond the bounds it checked: the exec path
//! re-checks nothing the child could change (see `supervisor` for TOCTOU handling).

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use crate::procfs::cwd_of;
use crate::seccomp::listener::Notification;

/// Longest single argument or environment string the kernel accepts (`MAX_ARG_STRLEN`).
pub const MAX_STRING: usize = 32 * 4096;
/// Upper bound on argv + envp together; the kernel's own limit is a quarter of the stack
/// rlimit, 2 MiB by default.
pub const MAX_TOTAL: usize = 16 * 1024 * 1024;
/// Upper bound on the number of pointers in argv or envp.
pub const MAX_COUNT: usize = 1 << 20;
const PAGE: usize = 4096;

fn page_offset(addr: u64) -> usize {
    // The remainder is below 4096.
    usize::try_from(addr % PAGE as u64).unwrap_or(0)
}

/// Why the child's memory could not be read as an exec's arguments.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("bad address {0:#x} in the exec's arguments")]
    Fault(u64),
    #[error("exec arguments exceed {limit} bytes")]
    TooLong { limit: usize },
    #[error("reading the process's memory: {0}")]
    Io(#[source] io::Error),
}

impl ReadError {
    /// The errno to answer the exec with.
    pub fn errno(&self) -> i32 {
        match self {
            ReadError::Fault(_) => libc::EFAULT,
            ReadError::TooLong { .. } => libc::E2BIG,
            ReadError::Io(e) => e.raw_os_error().unwrap_or(libc::EFAULT),
        }
    }
}

/// How another process's memory is read (a paused exec's path, argv and environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryAccess {
    /// `process_vm_readv`: no file to open, one syscall per read.
    ProcessVmReadv,
    /// `pread` on `/proc/PID/mem`, opened once per [`RemoteMemory`].
    ProcMem,
}

impl std::fmt::Display for MemoryAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MemoryAccess::ProcessVmReadv => "process_vm_readv",
            MemoryAccess::ProcMem => "/proc/PID/mem",
        })
    }
}

/// The memory of one process.
#[derive(Debug)]
pub struct RemoteMemory {
    pid: libc::pid_t,
    /// `/proc/PID/mem`, with [`MemoryAccess::ProcMem`].
    mem: Option<std::fs::File>,
}

impl RemoteMemory {
    /// Reads with `process_vm_readv`.
    pub fn new(pid: u32) -> Self {
        RemoteMemory {
            pid: libc::pid_t::try_from(pid).unwrap_or(libc::pid_t::MAX),
            mem: None,
        }
    }

    /// Reads the way `access` says; `/proc/PID/mem` is opened here (a thread id works).
    pub fn open(pid: u32, access: MemoryAccess) -> Result<Self, ReadError> {
        let mut memory = RemoteMemory::new(pid);
        if access == MemoryAccess::ProcMem {
            let file = std::fs::File::open(format!("/proc/{pid}/mem")).map_err(ReadError::Io)?;
            memory.mem = Some(file);
        }
        Ok(memory)
    }

    /// Reads up to `buf.len()` bytes at `addr`; returns how many were read (short at the
    /// first unmapped page).
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<usize, ReadError> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(mem) = &self.mem {
            use std::os::unix::fs::FileExt;
            // Nothing mapped at `addr`: EIO; an address beyond off_t: EINVAL.
            return mem
                .read_at(buf, addr)
                .map_err(|err| match err.raw_os_error() {
                    Some(libc::EIO | libc::EFAULT | libc::EINVAL) => ReadError::Fault(addr),
                    _ => ReadError::Io(err),
                });
        }
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: `local` describes `buf`, writable for its whole length; `remote` is only
        // dereferenced by the kernel in the other process, which reports faults as errors.
        let ret = unsafe { libc::process_vm_readv(self.pid, &local, 1, &remote, 1, 0) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::EFAULT) => ReadError::Fault(addr),
                _ => ReadError::Io(err),
            });
        }
        Ok(usize::try_from(ret).unwrap_or(0))
    }

    /// Reads a NUL-terminated string of at most `max` bytes (without the NUL).
    pub fn read_cstring(&self, addr: u64, max: usize) -> Result<Vec<u8>, ReadError> {
        if addr == 0 {
            return Err(ReadError::Fault(0));
        }
        let mut out = Vec::new();
        let mut chunk = [0u8; PAGE];
        let mut at = addr;
        loop {
            // Stay within the current page: the next one may not be mapped.
            let to_page_end = PAGE - page_offset(at);
            let want = to_page_end.min(max + 1 - out.len().min(max + 1)).max(1);
            let got = self.read(at, &mut chunk[..want.min(PAGE)])?;
            if got == 0 {
                return Err(ReadError::Fault(at));
            }
            if let Some(nul) = chunk[..got].iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..nul]);
                return Ok(out);
            }
            out.extend_from_slice(&chunk[..got]);
            if out.len() > max {
                return Err(ReadError::TooLong { limit: max });
            }
            at = at.checked_add(got as u64).ok_or(ReadError::Fault(at))?;
        }
    }

    /// Reads a NULL-terminated array of string pointers (argv or envp). A NULL array is
    /// empty, as the kernel treats it. `budget` is decremented by the bytes read.
    ///
    /// The strings of each page of pointers are read in one `process_vm_readv` (a window
    /// per string, never past its page), so an exec costs the same few syscalls whatever
    /// its argc; a string longer than its window, or one whose window could not be read,
    /// is finished (or failed, with the exact address) by [`RemoteMemory::read_cstring`].
    pub fn read_string_array(
        &self,
        addr: u64,
        budget: &mut usize,
    ) -> Result<Vec<Vec<u8>>, ReadError> {
        self.read_string_array_from(addr, None, budget)
    }

    /// An exec's path and argv, the first part of each in one `process_vm_readv` (the
    /// path to the end of its page, the argv pointers to the end of theirs): one syscall
    /// less on every exec. Anything the first read does not settle (a path longer than
    /// its window, a fault) goes the one-at-a-time way, with the same results and errors
    /// as [`RemoteMemory::read_cstring`] and [`RemoteMemory::read_string_array`].
    pub fn read_path_and_argv(
        &self,
        path: u64,
        max_path: usize,
        argv: u64,
        budget: &mut usize,
    ) -> Result<(Vec<u8>, Vec<Vec<u8>>), ReadError> {
        if self.mem.is_some() || path == 0 || argv == 0 {
            let p = self.read_cstring(path, max_path)?;
            return Ok((p, self.read_string_array(argv, budget)?));
        }
        let path_len = (PAGE - page_offset(path)).min(max_path + 1);
        let argv_len = PAGE - page_offset(argv);
        let mut buf = [0u8; 2 * PAGE];
        let windows = [(path, 0, path_len), (argv, path_len, argv_len)];
        let got = self.read_windows(&windows, &mut buf[..path_len + argv_len]);
        let path_bytes = match buf[..path_len.min(got)].iter().position(|&b| b == 0) {
            Some(nul) => buf[..nul].to_vec(),
            // Not settled by the window: the exact, one-string way.
            _ => self.read_cstring(path, max_path)?,
        };
        let first = (got == path_len + argv_len).then(|| &buf[path_len..path_len + argv_len]);
        let argv = self.read_string_array_from(argv, first, budget)?;
        Ok((path_bytes, argv))
    }

    /// [`RemoteMemory::read_string_array`], with the first page of pointers (from `addr` to
    /// its page's end) already read.
    fn read_string_array_from(
        &self,
        addr: u64,
        mut first: Option<&[u8]>,
        budget: &mut usize,
    ) -> Result<Vec<Vec<u8>>, ReadError> {
        let mut strings = Vec::new();
        if addr == 0 {
            return Ok(strings);
        }
        let mut ptrs = [0u8; PAGE];
        let mut batch = Batch::default();
        let mut at = addr;
        loop {
            let to_page_end = PAGE - page_offset(at);
            let got = match first.take() {
                Some(window) => {
                    ptrs[..window.len()].copy_from_slice(window);
                    window.len()
                }
                None => self.read(at, &mut ptrs[..to_page_end])?,
            };
            let whole = got - got % 8;
            if whole == 0 {
                return Err(ReadError::Fault(at));
            }
            let mut end = false;
            batch.ptrs.clear();
            for p in ptrs[..whole].chunks_exact(8) {
                let ptr = u64::from_ne_bytes(p.try_into().unwrap_or([0; 8]));
                if ptr == 0 {
                    end = true;
                    break;
                }
                if strings.len() + batch.ptrs.len() >= MAX_COUNT {
                    return Err(ReadError::TooLong { limit: MAX_COUNT });
                }
                batch.ptrs.push(ptr);
            }
            self.read_batch(&mut batch, budget, &mut strings)?;
            if end {
                return Ok(strings);
            }
            at = at.checked_add(whole as u64).ok_or(ReadError::Fault(at))?;
        }
    }

    /// Reads the strings at `batch.ptrs` (in order) into `out`.
    fn read_batch(
        &self,
        batch: &mut Batch,
        budget: &mut usize,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), ReadError> {
        // At most IOV_MAX iovecs per call.
        for chunk in 0..batch.ptrs.len().div_ceil(IOV_MAX) {
            let from = chunk * IOV_MAX;
            let to = (from + IOV_MAX).min(batch.ptrs.len());
            batch.windows.clear();
            let mut total = 0;
            for &ptr in &batch.ptrs[from..to] {
                let len = (PAGE - page_offset(ptr)).min(WINDOW);
                batch.windows.push((ptr, total, len));
                total += len;
            }
            batch.buf.clear();
            batch.buf.resize(total, 0);
            let got = self.read_windows(&batch.windows, &mut batch.buf);
            for &(ptr, offset, len) in &batch.windows {
                let max = MAX_STRING.min(*budget);
                let s = if offset + len <= got {
                    let window = &batch.buf[offset..offset + len];
                    match window.iter().position(|&b| b == 0) {
                        Some(nul) if nul <= max => window[..nul].to_vec(),
                        Some(_) => return Err(ReadError::TooLong { limit: max }),
                        // Longer than its window: read the rest from where it stopped.
                        None => {
                            let rest = self.read_cstring(
                                ptr + len as u64,
                                max.checked_sub(len)
                                    .ok_or(ReadError::TooLong { limit: max })?,
                            )?;
                            let mut s = window.to_vec();
                            s.extend_from_slice(&rest);
                            s
                        }
                    }
                } else {
                    // Its window was not read (unmapped, or after one that was not): the
                    // one-string path reports the exact fault.
                    self.read_cstring(ptr, max)?
                };
                *budget = budget.saturating_sub(s.len() + 1);
                if *budget == 0 {
                    return Err(ReadError::TooLong { limit: MAX_TOTAL });
                }
                out.push(s);
            }
        }
        Ok(())
    }

    /// One `process_vm_readv` of `windows` (remote address, offset in `buf`, length) into
    /// `buf`: how many bytes were read, in order (0 on any error: the caller falls back).
    fn read_windows(&self, windows: &[(u64, usize, usize)], buf: &mut [u8]) -> usize {
        if let Some(mem) = &self.mem {
            // No vectored read for another process's memory file: one pread per window,
            // up to the first that does not read whole.
            use std::os::unix::fs::FileExt;
            let mut got = 0;
            for &(addr, offset, len) in windows {
                match mem.read_at(&mut buf[offset..offset + len], addr) {
                    Ok(n) if n == len => got = offset + len,
                    _ => break,
                }
            }
            return got;
        }
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let remote: Vec<libc::iovec> = windows
            .iter()
            .map(|&(addr, _, len)| libc::iovec {
                iov_base: addr as *mut libc::c_void,
                iov_len: len,
            })
            .collect();
        let count = libc::c_ulong::try_from(remote.len()).unwrap_or(0);
        // SAFETY: `local` describes `buf`, writable for its whole length, which is the sum
        // of the remote lengths; `remote` (at most IOV_MAX entries) is only dereferenced by
        // the kernel in the other process, which stops at the first fault.
        let ret = unsafe { libc::process_vm_readv(self.pid, &local, 1, remote.as_ptr(), count, 0) };
        usize::try_from(ret).unwrap_or(0)
    }
}

/// How much of a string is read speculatively in a batch: most arguments are shorter.
const WINDOW: usize = 256;
/// `IOV_MAX` on Linux.
const IOV_MAX: usize = 1024;

/// Scratch space of [`RemoteMemory::read_string_array`].
#[derive(Default)]
struct Batch {
    ptrs: Vec<u64>,
    windows: Vec<(u64, usize, usize)>,
    buf: Vec<u8>,
}

// ---------------------------------------------------------------------------------------
// One paused exec, read out of the caller: which program, with which argv, from where.
//
// The path is made absolute the way the kernel will resolve it: against the caller's cwd
// for `execve`, against the dirfd for `execveat` (`AT_EMPTY_PATH` with an empty path is an
// exec of the fd itself). The environment is read only when a copy will be run.

/// A decoded `execve`/`execveat`.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// The calling thread.
    pub tid: u32,
    /// The program, absolute where it could be resolved.
    pub path: PathBuf,
    /// True when the program is an open fd rather than a path (`fexecve`).
    pub by_fd: bool,
    pub argv: Vec<OsString>,
    /// Address of envp in the caller, read later by [`ExecRequest::read_env`].
    envp: u64,
}

impl ExecRequest {
    /// Reads path and argv of a notification, the way `access` says (decided at start).
    pub fn read(n: &Notification, access: MemoryAccess) -> Result<ExecRequest, ReadError> {
        let mem = RemoteMemory::open(n.pid, access)?;
        let (dirfd, path_ptr, argv_ptr, envp_ptr, flags) = if n.is_execveat() {
            // execveat(dirfd, path, argv, envp, flags): dirfd is an int in the low half
            // of a u64 slot.
            (
                i32::from_ne_bytes(low_u32(n.args[0]).to_ne_bytes()),
                n.args[1],
                n.args[2],
                n.args[3],
                n.args[4],
            )
        } else {
            (libc::AT_FDCWD, n.args[0], n.args[1], n.args[2], 0)
        };
        let mut budget = MAX_TOTAL;
        let (raw_path, argv) =
            mem.read_path_and_argv(path_ptr, libc::PATH_MAX as usize, argv_ptr, &mut budget)?;
        let raw_path = OsString::from_vec(raw_path);
        let argv = argv.into_iter().map(OsString::from_vec).collect();
        let empty_path = flags & libc::AT_EMPTY_PATH as u64 != 0 && raw_path.is_empty();
        let path = resolve(n.pid, dirfd, Path::new(&raw_path), empty_path);
        Ok(ExecRequest {
            tid: n.pid,
            path,
            by_fd: empty_path,
            argv,
            envp: envp_ptr,
        })
    }

    /// Reads the caller's environment (call while the exec is still paused).
    pub fn read_env(&self, access: MemoryAccess) -> Result<Vec<OsString>, ReadError> {
        let mut budget = MAX_TOTAL;
        Ok(RemoteMemory::open(self.tid, access)?
            .read_string_array(self.envp, &mut budget)?
            .into_iter()
            .map(OsString::from_vec)
            .collect())
    }

    /// The argv as strings, for the policy (not valid UTF-8: replaced, lossy).
    pub fn argv_lossy(&self) -> Vec<String> {
        self.argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }
}

fn low_u32(v: u64) -> u32 {
    u32::try_from(v & 0xffff_ffff).unwrap_or(0)
}

fn resolve(tid: u32, dirfd: i32, path: &Path, empty_path: bool) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let base = if dirfd == libc::AT_FDCWD {
        cwd_of(tid)
    } else {
        std::fs::read_link(format!("/proc/{tid}/fd/{dirfd}")).unwrap_or_default()
    };
    if empty_path { base } else { base.join(path) }
}

/// Longest path the kernel takes; reading stops there.
const _: () = assert!(libc::PATH_MAX as usize <= MAX_STRING);

#[cfg(test)]
mod exec_request_tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_cwd() {
        let me = std::process::id();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            resolve(me, libc::AT_FDCWD, Path::new("bin/x"), false),
            cwd.join("bin/x")
        );
        assert_eq!(
            resolve(me, libc::AT_FDCWD, Path::new("/abs"), false),
            PathBuf::from("/abs")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn me() -> RemoteMemory {
        RemoteMemory::new(std::process::id())
    }

    fn me_by_proc_mem() -> RemoteMemory {
        RemoteMemory::open(std::process::id(), MemoryAccess::ProcMem).unwrap()
    }

    /// Each test reads through both ways.
    fn both() -> [RemoteMemory; 2] {
        [me(), me_by_proc_mem()]
    }

    #[test]
    fn reads_own_strings_and_arrays() {
        let a = CString::new("hello").unwrap();
        let b = CString::new("").unwrap();
        let arr: [*const libc::c_char; 3] = [a.as_ptr(), b.as_ptr(), std::ptr::null()];
        for mem in both() {
            let mut budget = MAX_TOTAL;
            let got = mem
                .read_string_array(arr.as_ptr() as u64, &mut budget)
                .unwrap();
            assert_eq!(got, vec![b"hello".to_vec(), Vec::new()], "{mem:?}");
            assert_eq!(budget, MAX_TOTAL - 7);
        }
    }

    #[test]
    fn batched_strings_of_every_length_read_exactly() {
        // Short ones, one longer than a batch window, one crossing pages, and more strings
        // than one process_vm_readv takes.
        let mut owned: Vec<CString> = (0..1500)
            .map(|i| CString::new(format!("arg-{i}")).unwrap())
            .collect();
        owned[3] = CString::new(vec![b'y'; WINDOW * 3 + 7]).unwrap();
        owned[700] = CString::new(vec![b'z'; 2 * PAGE + 1]).unwrap();
        owned[1499] = CString::new("").unwrap();
        let mut ptrs: Vec<*const libc::c_char> = owned.iter().map(|c| c.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        let want: Vec<Vec<u8>> = owned.iter().map(|c| c.as_bytes().to_vec()).collect();
        let bytes: usize = want.iter().map(|s| s.len() + 1).sum();
        for mem in both() {
            let mut budget = MAX_TOTAL;
            let got = mem
                .read_string_array(ptrs.as_ptr() as u64, &mut budget)
                .unwrap();
            assert_eq!(got, want, "{mem:?}");
            assert_eq!(budget, MAX_TOTAL - bytes);
        }
    }

    #[test]
    fn a_bad_pointer_inside_a_batch_is_a_fault_at_its_address() {
        let a = CString::new("fine").unwrap();
        let arr: [*const libc::c_char; 4] = [
            a.as_ptr(),
            0x18 as *const libc::c_char,
            a.as_ptr(),
            std::ptr::null(),
        ];
        for mem in both() {
            let mut budget = MAX_TOTAL;
            let err = mem
                .read_string_array(arr.as_ptr() as u64, &mut budget)
                .unwrap_err();
            assert!(matches!(err, ReadError::Fault(0x18)), "{mem:?}: {err:?}");
        }
    }

    #[test]
    fn a_batched_string_over_the_limit_is_e2big() {
        let long = CString::new(vec![b'x'; 600]).unwrap();
        let arr: [*const libc::c_char; 2] = [long.as_ptr(), std::ptr::null()];
        let short = CString::new(vec![b'x'; 100]).unwrap();
        let arr2: [*const libc::c_char; 2] = [short.as_ptr(), std::ptr::null()];
        for mem in both() {
            let mut budget = 500;
            let err = mem
                .read_string_array(arr.as_ptr() as u64, &mut budget)
                .unwrap_err();
            assert_eq!(err.errno(), libc::E2BIG, "{mem:?}");
            let mut budget = 50;
            let err = mem
                .read_string_array(arr2.as_ptr() as u64, &mut budget)
                .unwrap_err();
            assert_eq!(err.errno(), libc::E2BIG, "{mem:?}");
        }
    }

    #[test]
    fn path_and_argv_in_one_read_match_the_separate_reads() {
        let path = CString::new("/usr/bin/some-program").unwrap();
        let long_path = CString::new(vec![b'p'; 5000]).unwrap();
        let a = CString::new("arg").unwrap();
        let argv: [*const libc::c_char; 3] = [path.as_ptr(), a.as_ptr(), std::ptr::null()];
        let bad_argv: [*const libc::c_char; 2] = [0x28 as *const libc::c_char, std::ptr::null()];
        let cases: [(u64, u64); 5] = [
            (path.as_ptr() as u64, argv.as_ptr() as u64),
            (long_path.as_ptr() as u64, argv.as_ptr() as u64),
            (0x10, argv.as_ptr() as u64),
            (path.as_ptr() as u64, 0x20),
            (path.as_ptr() as u64, bad_argv.as_ptr() as u64),
        ];
        for mem in both() {
            for (p, v) in cases {
                let mut b1 = MAX_TOTAL;
                let together = mem.read_path_and_argv(p, 4096, v, &mut b1);
                let mut b2 = MAX_TOTAL;
                let apart = mem
                    .read_cstring(p, 4096)
                    .and_then(|path| Ok((path, mem.read_string_array(v, &mut b2)?)));
                assert_eq!(
                    format!("{together:?}"),
                    format!("{apart:?}"),
                    "{mem:?} {p:#x} {v:#x}"
                );
                assert_eq!(b1, b2);
            }
        }
    }

    #[test]
    fn bad_pointer_is_a_fault_not_a_crash() {
        for mem in both() {
            let err = mem.read_cstring(8, 100).unwrap_err();
            assert_eq!(err.errno(), libc::EFAULT, "{mem:?}: {err}");
            let mut budget = MAX_TOTAL;
            let err = mem.read_string_array(0x10, &mut budget).unwrap_err();
            assert_eq!(err.errno(), libc::EFAULT, "{mem:?}: {err}");
            // Above the user address space (and beyond off_t for pread).
            let err = mem.read_cstring(u64::MAX - 8, 100).unwrap_err();
            assert_eq!(err.errno(), libc::EFAULT, "{mem:?}: {err}");
        }
    }

    #[test]
    fn string_longer_than_limit_is_e2big() {
        let long = CString::new(vec![b'x'; 10_000]).unwrap();
        for mem in both() {
            let err = mem.read_cstring(long.as_ptr() as u64, 5000).unwrap_err();
            assert_eq!(err.errno(), libc::E2BIG);
            let ok = mem.read_cstring(long.as_ptr() as u64, 10_000).unwrap();
            assert_eq!(ok.len(), 10_000);
        }
    }

    #[test]
    fn string_ending_at_page_end_before_unmapped_page_reads() {
        // Map two pages, unmap the second, put a string that ends exactly at the boundary.
        // SAFETY: anonymous private mapping, checked for failure below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        // SAFETY: the second page belongs to the mapping just created.
        let unmapped = unsafe { libc::munmap(base.cast::<u8>().add(PAGE).cast(), PAGE) };
        assert_eq!(unmapped, 0);
        let s = b"ends-at-boundary\0";
        let start = PAGE - s.len();
        // SAFETY: `start + s.len() == PAGE`, inside the still-mapped first page.
        unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), base.cast::<u8>().add(start), s.len()) };
        for mem in both() {
            let got = mem.read_cstring(base as u64 + start as u64, 1000).unwrap();
            assert_eq!(got, b"ends-at-boundary", "{mem:?}");
        }
        // SAFETY: unmapping the first page of our own mapping.
        unsafe { libc::munmap(base, PAGE) };
    }
}
