//! Text kura did not write (a server's error message, a name from an archive or a store) made
//! safe to print: bounded in length, on one line, and never a workflow command of the CI that
//! reads the log (GitHub's runner acts on a line that starts with `::`, and on `##[` anywhere
//! in a line).

/// Most characters of one piece of outside text in a message.
pub const MAX_SHOWN: usize = 1000;

/// `s` on one line: control characters (newlines included) escaped as `\n`, `\u{1b}`, …, cut
/// to [`MAX_SHOWN`] characters, and defused as a workflow command.
pub fn untrusted(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_SHOWN + 32));
    for (n, c) in s.chars().enumerate() {
        if n == MAX_SHOWN {
            out.push_str(&format!("… ({} more characters)", s.chars().count() - n));
            break;
        }
        if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    defuse(&out)
}

/// One line of a message as the runner will read it: a leading `::` (after the blanks the
/// runner trims) and any `##[` are broken with a backslash, visibly.
pub fn defuse(line: &str) -> String {
    let mut line = line.replace("##[", "#\\#[");
    let blank = line.len() - line.trim_start().len();
    if line[blank..].starts_with("::") {
        line.insert(blank, '\\');
    }
    line
}

/// A whole message of kura's that may quote outside text: cut to `max` bytes (on a character
/// boundary), control characters but newlines and tabs escaped, every line defused.
pub fn message(msg: &str, max: usize) -> String {
    let cut = if msg.len() > max {
        let mut end = max;
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} more bytes)", &msg[..end], msg.len() - end)
    } else {
        msg.to_string()
    };
    cut.split('\n')
        .map(|line| {
            let mut l = String::with_capacity(line.len());
            for c in line.chars() {
                if c.is_control() && c != '\t' {
                    l.extend(c.escape_default());
                } else {
                    l.push(c);
                }
            }
            defuse(&l)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_text_never_adds_a_line_or_a_command() {
        let s = untrusted("a\nb\r\n::add-mask::x\u{1b}[31m");
        assert_eq!(s, "a\\nb\\r\\n::add-mask::x\\u{1b}[31m");
        assert_eq!(untrusted("  ::stop-commands::t"), "  \\::stop-commands::t");
        assert_eq!(untrusted("x ##[add-mask]y"), "x #\\#[add-mask]y");
        let long = untrusted(&"é".repeat(5000));
        assert!(long.chars().count() < MAX_SHOWN + 40, "{}", long.len());
        let m = message("ok\n::error::pwned\n\u{7}", 100);
        assert_eq!(m, "ok\n\\::error::pwned\n\\u{7}");
        assert!(message(&"x".repeat(10_000), 100).len() < 140);
    }
}
