//! Reading a paused process's memory: the exec's path, argv and envp.
//!
//! `process_vm_readv` never crashes the reader: a bad pointer from the child is `EFAULT`
//! here, and becomes an `EFAULT` answer to the exec. Where a container profile blocks
//! `process_vm_readv` (Docker's default allows it only with `CAP_SYS_PTRACE`), `pread` on
//! `/proc/PID/mem` reads the same bytes under the same ptrace access check ([`MemoryAccess`],
//! decided once at start-up); an unmapped address is `EIO` there, reported as the same fault. Reads are bounded (one string at most
//! `MAX_ARG_STRLEN`, all strings together at most [`MAX_TOTAL`]), and never cross a page
//! boundary they do not need to, so a string that ends just before an unmapped page reads.

use std::io;

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

/// How another process's memory is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryAccess {
    /// `process_vm_readv`: no file to open, one syscall per read.
    ProcessVmReadv,
    /// `pread` on `/proc/PID/mem`, opened once per [`RemoteMemory`].
    ProcMem,
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
    pub fn read_string_array(
        &self,
        addr: u64,
        budget: &mut usize,
    ) -> Result<Vec<Vec<u8>>, ReadError> {
        let mut strings = Vec::new();
        if addr == 0 {
            return Ok(strings);
        }
        let mut ptrs = [0u8; PAGE];
        let mut at = addr;
        'outer: loop {
            let to_page_end = PAGE - page_offset(at);
            let got = self.read(at, &mut ptrs[..to_page_end])?;
            let whole = got - got % 8;
            if whole == 0 {
                return Err(ReadError::Fault(at));
            }
            for p in ptrs[..whole].chunks_exact(8) {
                let ptr = u64::from_ne_bytes(p.try_into().unwrap_or([0; 8]));
                if ptr == 0 {
                    break 'outer;
                }
                if strings.len() >= MAX_COUNT {
                    return Err(ReadError::TooLong { limit: MAX_COUNT });
                }
                let s = self.read_cstring(ptr, MAX_STRING.min(*budget))?;
                *budget = budget.saturating_sub(s.len() + 1);
                if *budget == 0 {
                    return Err(ReadError::TooLong { limit: MAX_TOTAL });
                }
                strings.push(s);
            }
            at = at.checked_add(whole as u64).ok_or(ReadError::Fault(at))?;
        }
        Ok(strings)
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
