//! Splitting a template into text and actions, and an action into its words.

use super::TemplateError;

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Action { column: usize, action: Action },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `.Branch`, `.Environment.HOME`: the dotted path without the leading dot.
    Field(Vec<String>),
    /// `checksum "go.sum"`: a function name and its arguments.
    Call(String, Vec<Arg>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Str(String),
    Field(Vec<String>),
}

const DELIMS: [(&str, &str); 2] = [("{{", "}}"), ("<<", ">>")];

pub fn parse(template: &str) -> Result<Vec<Part>, TemplateError> {
    let err = |column: usize, message: String| TemplateError {
        template: template.to_string(),
        column,
        message,
    };
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = template;
    let mut offset = 0usize; // byte offset of `rest` in `template`
    loop {
        let next = DELIMS
            .iter()
            .filter_map(|(open, close)| rest.find(open).map(|i| (i, *open, *close)))
            .min_by_key(|(i, _, _)| *i);
        let Some((i, open, close)) = next else {
            text.push_str(rest);
            break;
        };
        text.push_str(&rest[..i]);
        let column = template[..offset + i].chars().count() + 1;
        let inner_start = i + open.len();
        let Some(end) = rest[inner_start..].find(close) else {
            return Err(err(
                column,
                format!("'{open}' is never closed; add '{close}' after the action"),
            ));
        };
        let inner = &rest[inner_start..inner_start + end];
        // Go's whitespace-trim markers `{{-` / `-}}` are accepted; keys have no whitespace to trim.
        let inner = inner.strip_prefix('-').unwrap_or(inner);
        let inner = inner.strip_suffix('-').unwrap_or(inner);
        let action = parse_action(inner.trim()).map_err(|m| {
            // `${{ hashFiles('x') }}` pasted from a GitHub workflow: GitHub evaluates that
            // before any step runs; kura's own form is `{{ hashFiles "x" }}`.
            match template[..offset + i].ends_with('$') {
                true => err(
                    column - 1,
                    format!("{m}. `${{{{ ... }}}}` is a GitHub expression, which GitHub evaluates in a workflow file and kura does not; in a kura template write the function without `$` and with double quotes, as in {{{{ hashFiles \"**/package-lock.json\" }}}} or {{{{ checksum \"go.sum\" }}}}"),
                ),
                false => err(column, m),
            }
        })?;
        if !text.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut text)));
        }
        parts.push(Part::Action { column, action });
        let consumed = inner_start + end + close.len();
        rest = &rest[consumed..];
        offset += consumed;
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

fn parse_action(src: &str) -> Result<Action, String> {
    let words = split_words(src)?;
    let Some((first, args)) = words.split_first() else {
        return Err(
            "empty action; put a variable such as .Branch or a function such as epoch inside"
                .into(),
        );
    };
    match first {
        Arg::Field(path) => {
            if !args.is_empty() {
                return Err(format!(
                    "a variable takes no arguments, but .{} is followed by {} more word(s)",
                    path.join("."),
                    args.len()
                ));
            }
            Ok(Action::Field(path.clone()))
        }
        Arg::Str(name) => Ok(Action::Call(name.clone(), args.to_vec())),
    }
}

/// Words of an action: bare identifiers (function names, returned as `Arg::Str`),
/// `.Dotted.Paths`, and quoted strings (`"..."` with Go escapes, or raw `` `...` ``).
fn split_words(src: &str) -> Result<Vec<Arg>, String> {
    let mut words = Vec::new();
    let mut chars = src.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            _ if c.is_whitespace() => {
                chars.next();
            }
            '|' => {
                return Err(
                    "pipelines ('|') are not supported; call one function per action".into(),
                )
            }
            '"' | '`' => {
                chars.next();
                let s = if c == '"' {
                    quoted(&mut chars)?
                } else {
                    raw(&mut chars)?
                };
                if words.is_empty() {
                    return Err(format!(
                        "an action cannot start with a string; did you mean checksum \"{s}\"?"
                    ));
                }
                words.push(Arg::Str(s));
            }
            _ => {
                let w = bare(&mut chars);
                words.push(word(w, words.is_empty())?);
            }
        }
    }
    Ok(words)
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// The rest of a `"..."` string, with Go's common escapes.
fn quoted(chars: &mut Chars) -> Result<String, String> {
    let mut s = String::new();
    loop {
        match chars.next() {
            None => return Err("unterminated string; close it with '\"'".into()),
            Some('"') => return Ok(s),
            Some('\\') => match chars.next() {
                Some('n') => s.push('\n'),
                Some('t') => s.push('\t'),
                Some('\\') => s.push('\\'),
                Some('"') => s.push('"'),
                Some(other) => return Err(format!("unknown escape '\\{other}' in a string")),
                None => return Err("unterminated string; close it with '\"'".into()),
            },
            Some(ch) => s.push(ch),
        }
    }
}

/// The rest of a `` `...` `` raw string.
fn raw(chars: &mut Chars) -> Result<String, String> {
    let mut s = String::new();
    loop {
        match chars.next() {
            None => return Err("unterminated raw string; close it with '`'".into()),
            Some('`') => return Ok(s),
            Some(ch) => s.push(ch),
        }
    }
}

/// A bare word: up to whitespace, a quote or a pipe.
fn bare(chars: &mut Chars) -> String {
    let mut w = String::new();
    while let Some(&ch) = chars.peek() {
        if ch.is_whitespace() || ch == '"' || ch == '`' || ch == '|' {
            break;
        }
        w.push(ch);
        chars.next();
    }
    w
}

/// A bare word as a variable (`.Branch`), or as the function name when it comes first.
fn word(w: String, first: bool) -> Result<Arg, String> {
    if let Some(path) = w.strip_prefix('.') {
        let segs: Vec<String> = path.split('.').map(str::to_string).collect();
        if segs.iter().any(|s| s.is_empty()) {
            return Err(format!("malformed variable '{w}'"));
        }
        return Ok(Arg::Field(segs));
    }
    if !first {
        return Err(format!(
            "argument '{w}' must be quoted (\"{w}\") or be a variable (.Name)"
        ));
    }
    if !w
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
    {
        return Err(format!(
            "unexpected '{w}'; expected a variable or a function name"
        ));
    }
    Ok(Arg::Str(w))
}
