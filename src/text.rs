//! Text mvm did not write itself — a build's log, Firecracker's errors, a
//! file or link name found on the host — shown to an operator. Control
//! characters in it could set the terminal's title, clear the screen or
//! draw a fake "Apply complete!", so everything such text reaches a
//! terminal through is escaped here: each control character (C0 but
//! newline and tab, DEL, C1) becomes a visible `\x1b`-style escape.
//!
//! Pure: no I/O.

use std::borrow::Cow;

/// `s` with every control character but `\n` and `\t` written as `\xNN`
/// (C1 controls as `\u{NN}`), and a literal backslash left as it is.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !has_controls(s) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_control(c) {
            let n = c as u32;
            if n < 0x80 {
                out.push_str(&format!("\\x{n:02x}"));
            } else {
                out.push_str(&format!("\\u{{{n:x}}}"));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `escape_controls` with newlines escaped too: for text that must stay
/// on one line (a progress line, a log line).
pub fn one_line(s: &str) -> Cow<'_, str> {
    let escaped = escape_controls(s);
    if !escaped.contains(['\n', '\t']) {
        return escaped;
    }
    Cow::Owned(escaped.replace('\n', "\\n").replace('\t', "\\t"))
}

/// Whether any byte of `s` is one `pick` picks: 64 bytes at a time, each
/// block without an early exit, so the compiler checks it in vector steps
/// (a plan's text is tens of MB).
pub fn any_byte(s: &str, pick: impl Fn(u8) -> bool) -> bool {
    s.as_bytes()
        .chunks(64)
        .any(|block| block.iter().fold(false, |hit, &b| hit | pick(b)))
}

/// A control character but `\n` and `\t`.
fn is_control(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// Whether `s` has a control character but `\n` and `\t`. Those are a
/// byte below 0x20, 0x7f, or (C1) 0xc2 followed by 0x80..=0x9f: text
/// without such bytes is found safe without decoding a character.
fn has_controls(s: &str) -> bool {
    any_byte(s, |b| {
        (b < 0x20 && b != b'\n' && b != b'\t') || b == 0x7f || b == 0xc2
    }) && s.chars().any(is_control)
}

/// `escape_controls`, but a color sequence (SGR: `ESC [ digits;… m`,
/// what mvm's own styling writes) passes: the last filter before a
/// terminal. Nothing else that moves the cursor, clears, sets a title or
/// links survives it.
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    if !has_controls(s) {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len() + 8);
    let mut i = 0;
    while i < s.len() {
        if bytes[i] == 0x1b && bytes.get(i + 1) == Some(&b'[') {
            let params = bytes[i + 2..]
                .iter()
                .take_while(|b| b.is_ascii_digit() || **b == b';')
                .count();
            if bytes.get(i + 2 + params) == Some(&b'm') {
                out.push_str(&s[i..i + 3 + params]);
                i += 3 + params;
                continue;
            }
        }
        let c = s[i..].chars().next().expect("i is on a char boundary");
        out.push_str(&escape_controls(c.encode_utf8(&mut [0; 4])));
        i += c.len_utf8();
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte prefilter never lets a control character through, at any
    /// place in a 64-byte block, and passes text that only looks like one.
    #[test]
    fn controls_are_found_by_their_bytes() {
        for bad in ["\x1b", "\x7f", "\u{9b}", "\u{85}", "\r", "\x00"] {
            for at in [0, 1, 63, 64, 65, 200] {
                let s = format!("{}{bad}{}", "a".repeat(at), "é".repeat(40));
                assert!(has_controls(&s), "{bad:?} at {at}");
                assert_ne!(escape_controls(&s), s);
            }
        }
        for fine in ["plain\ttext\n", "é ü \u{a0} \u{c2} 日本", ""] {
            assert!(!has_controls(fine), "{fine:?}");
            assert!(matches!(terminal_safe(fine), Cow::Borrowed(_)));
        }
    }

    /// A bug fixed: a failed build's log tail reached the terminal raw —
    /// OSC title, screen clear, cursor home and a green fake summary.
    #[test]
    fn terminal_escapes_are_made_visible() {
        let evil = "\x1b]0;owned\x07\x1b[2J\x1b[H\x1b[32mApply complete!\x1b[0m\r\u{9b}31m";
        let shown = escape_controls(evil);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown}");
        assert_eq!(
            shown,
            "\\x1b]0;owned\\x07\\x1b[2J\\x1b[H\\x1b[32mApply complete!\\x1b[0m\\x0d\\u{9b}31m"
        );
        assert!(matches!(
            escape_controls("plain\nline\tand ü"),
            Cow::Borrowed(_)
        ));
        assert_eq!(one_line("a\nb\x1b"), "a\\nb\\x1b");
        // Colors pass the last filter; a clear, a title or a bare ESC not.
        assert_eq!(
            terminal_safe("\x1b[1;31merror:\x1b[0m x\x1b[2J\x1b]0;t\x07"),
            "\x1b[1;31merror:\x1b[0m x\\x1b[2J\\x1b]0;t\\x07"
        );
    }
}
