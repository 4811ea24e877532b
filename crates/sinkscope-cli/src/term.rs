//! Everything the binary prints goes through here:
//!
//! - stdout ([`say!`], [`say_json`]): a write error is returned as [`StdoutError`] instead of
//!   the panic of `println!`; `main` ends quietly (exit 0) when the reader closed the pipe
//!   (`sinkscope inspect M --json | head -c1`), as Unix filters do, and with a message and exit 3
//!   otherwise (e.g. `> /dev/full`).
//! - stderr ([`note!`]): notes, warnings, progress and the final error; a failed write is
//!   ignored (there is nowhere left to report it), never a panic.
//! - Terminal hygiene: text lines are passed through [`escape`], so a string read from a file
//!   (architecture, tensor name, token, path) can never send escape sequences or other control
//!   characters to the terminal: they appear as `\u{1b}`. JSON output is escaped by serde.

use std::borrow::Cow;
use std::io::Write;

/// stdout could not be written.
#[derive(Debug, thiserror::Error)]
#[error("stdout: cannot write: {0}")]
pub struct StdoutError(pub std::io::Error);

impl StdoutError {
    /// The reader went away (closed pipe): not worth a message.
    pub fn is_closed_pipe(&self) -> bool {
        self.0.kind() == std::io::ErrorKind::BrokenPipe
    }
}

/// `s` with every control character (C0, DEL, C1) written as `\u{..}`, like Rust's
/// `char::escape_unicode`; other text unchanged.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes one escaped line to stdout.
///
/// # Errors
/// [`StdoutError`] when stdout cannot be written.
pub fn say_line(args: std::fmt::Arguments<'_>) -> Result<(), StdoutError> {
    let text = args.to_string();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", escape(&text)).and_then(|()| out.flush()).map_err(StdoutError)
}

/// Writes JSON text (already escaped by serde) and a newline to stdout.
///
/// # Errors
/// [`StdoutError`] when stdout cannot be written.
pub fn say_json(text: &str) -> Result<(), StdoutError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).map_err(StdoutError)
}

/// Writes one escaped line to stderr, ignoring failures.
pub fn note_line(args: std::fmt::Arguments<'_>) {
    let text = args.to_string();
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", escape(&text));
    let _ = err.flush();
}

/// `println!` for the commands: escaped, and `?`-returns a [`StdoutError`] instead of panicking.
macro_rules! say {
    () => {
        $crate::term::say_line(format_args!(""))?
    };
    ($($arg:tt)*) => {
        $crate::term::say_line(format_args!($($arg)*))?
    };
}
pub(crate) use say;

/// `eprintln!` for the commands: escaped, never panics.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::term::note_line(format_args!($($arg)*))
    };
}
pub(crate) use note;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Control characters become visible escapes; ordinary text (Unicode included) is kept.
    #[test]
    fn escapes_control_characters_only() {
        assert_eq!(escape("llama"), "llama");
        assert_eq!(escape("naïve ▁tok"), "naïve ▁tok");
        assert_eq!(escape("a\u{1b}[31mred\u{7}\n"), "a\\u{1b}[31mred\\u{7}\\u{a}");
        assert_eq!(escape("\u{9b}x\u{7f}"), "\\u{9b}x\\u{7f}");
    }
}
