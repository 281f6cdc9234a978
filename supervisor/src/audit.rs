//! The audit log: one JSON line per exec, appended to a file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use crate::session::ExecRecord;

/// An append-only JSON-lines file shared by all sessions of a supervisor.
#[derive(Debug)]
pub struct AuditLog {
    file: Mutex<File>,
}

impl AuditLog {
    /// Opens (creating) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AuditLog {
            file: Mutex::new(file),
        })
    }

    /// Appends one record as one line. A write failure is logged, never fatal to the exec.
    pub fn write(&self, record: &ExecRecord) {
        self.write_event(record);
    }

    /// Appends any record (an exec, a proxied connection) as one JSON line.
    pub fn write_event<T: serde::Serialize>(&self, record: &T) {
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(err) => {
                tracing::error!("audit: cannot serialize record: {err}");
                return;
            }
        };
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        // One write(2) per line on an O_APPEND file: lines from concurrent sessions never
        // interleave.
        if let Err(err) = file.write_all(&line) {
            tracing::error!("audit: cannot append: {err}");
        }
    }
}
