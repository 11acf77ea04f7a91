//! Showing text that came from the server or an algorithm. A name, a reason or a result may
//! hold line breaks, escape sequences or other control characters that would let whoever wrote
//! it paint lines in a terminal (a fake `run 9 completed`) or hide text. [`safe`] escapes every
//! control character, and the Unicode bidirectional controls, as `\n`, `\u{1b}` and so on, so a
//! line of output is always one line that the tool itself printed.

use std::borrow::Cow;
use std::fmt::Write as _;

fn needs_escape(c: char) -> bool {
    c.is_control()
        || c == '\\'
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with control characters, bidirectional controls and backslashes escaped; borrowed when
/// nothing needs escaping.
pub fn safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_untouched_and_controls_are_escaped() {
        assert!(matches!(safe("hospital-a: ok é"), Cow::Borrowed(_)));
        assert_eq!(safe("a\nrun 99 completed"), "a\\nrun 99 completed");
        assert_eq!(safe("\u{1b}[2K\r"), "\\u{1b}[2K\\r");
        assert_eq!(safe("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(safe("c:\\n"), "c:\\\\n");
        assert_eq!(safe("\u{7f}\u{85}"), "\\u{7f}\\u{85}");
        for s in ["a\nb", "\u{1b}]0;x\u{7}", "\r\n\t"] {
            assert!(!safe(s).chars().any(char::is_control), "{s:?}");
        }
    }
}
