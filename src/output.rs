//! Standard output for every command: one locked writer, flushed before it returns.
//!
//! A closed pipe (`| head`, `| true`) is not a failure of the command: [`print`] says
//! so and each command decides what it means (`inspect` and `model check` end
//! quietly; `score`, `merge` and `synth` only stop printing). Any other write error,
//! a full disk first of all, is returned. Nothing else in the crate writes to stdout.

use std::io::{self, Write};

/// What became of a print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Printed {
    /// Every byte reached stdout.
    All,
    /// The reader went away (EPIPE); stdout is gone for the rest of the command.
    PipeClosed,
}

/// Writes `text` to stdout through its lock and flushes it.
pub fn print(text: &str) -> io::Result<Printed> {
    write_to(&mut io::stdout().lock(), text.as_bytes())
}

/// [`print`] into any writer (the unit tests use a failing one).
fn write_to(out: &mut impl Write, bytes: &[u8]) -> io::Result<Printed> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(Printed::All),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Printed::PipeClosed),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing(io::ErrorKind);

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_reported_and_a_full_disk_is_an_error() {
        let mut sink = Vec::new();
        assert_eq!(write_to(&mut sink, b"x\n").unwrap(), Printed::All);
        assert_eq!(sink, b"x\n");
        let closed = write_to(&mut Failing(io::ErrorKind::BrokenPipe), b"x");
        assert_eq!(closed.unwrap(), Printed::PipeClosed);
        let full = write_to(&mut Failing(io::ErrorKind::StorageFull), b"x");
        assert_eq!(full.unwrap_err().kind(), io::ErrorKind::StorageFull);
    }
}
