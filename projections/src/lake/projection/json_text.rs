//! A scanner of JSON text as serde_json writes it: the members of an object and where their
//! values end, and whether a text is exactly what serde_json writes for the `Value` it parses to
//! (compact, serde_json's escapes and number forms, keys in order). Where it is, the projections
//! take the text as it is instead of parsing it and writing it again.

use std::borrow::Cow;

use serde_json::Value;

/// A member of a JSON object's text: its quoted key's byte range and where its value ends (the
/// value follows the key's `:` directly).
#[derive(Debug, Clone)]
pub(super) struct Member {
    pub(super) key: std::ops::Range<usize>,
    pub(super) end: usize,
    /// Whether the key has escapes (its text is not the key itself).
    pub(super) escaped_key: bool,
}

/// What [`object_members`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// An object written as `serde_json` writes a `Value`; its members are listed.
    Object,
    /// Not an object (a payload without fields).
    Other,
    /// Not written as `serde_json` writes a `Value` (whitespace between tokens, other escapes or
    /// number forms): its members' texts are not those serde_json would write.
    Irregular,
}

/// Lists the members of `text`, JSON text already checked to be valid, into `members`, if it is
/// an object written as `serde_json` writes a `Value`: compact, strings escaped as serde_json
/// escapes them (`\"`, `\\`, `\b\f\n\r\t`, other control characters as `\u00xx`, nothing
/// else), numbers in the form serde_json prints the number they parse to. Then each member's
/// text is the one serde_json writes for it.
pub(super) fn object_members(text: &str, members: &mut Vec<Member>) -> Shape {
    members.clear();
    let b = text.as_bytes();
    match b.first() {
        Some(b'{') => {}
        Some(c) if c.is_ascii_whitespace() => return Shape::Irregular,
        _ => return Shape::Other,
    }
    let scanned = (|| {
        let mut i = 1;
        if b.get(i) == Some(&b'}') {
            return Some(i + 1);
        }
        loop {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let (after_key, escaped_key) = scan_string(b, i)?;
            if b.get(after_key) != Some(&b':') {
                return None;
            }
            let end = scan_value(text, after_key + 1)?;
            members.push(Member { key: i..after_key, end, escaped_key });
            match b.get(end) {
                Some(b',') => i = end + 1,
                Some(b'}') => return Some(end + 1),
                _ => return None,
            }
        }
    })();
    match scanned {
        Some(end) if end == b.len() => Shape::Object,
        _ => Shape::Irregular,
    }
}

/// The end of the string starting at `b[start]` (a `"`) and whether it has escapes, or `None`
/// if it has an escape serde_json does not write.
fn scan_string(b: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut i = start + 1;
    let mut escaped = false;
    loop {
        match *b.get(i)? {
            b'"' => return Some((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                match *b.get(i + 1)? {
                    b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        let hex = b.get(i + 2..i + 6)?;
                        let lower_hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
                        // Only the control characters without a short escape.
                        let control = hex[0] == b'0' && hex[1] == b'0' && matches!(hex[2], b'0' | b'1') && lower_hex(hex[3]);
                        if !control || matches!(&hex[2..], b"08" | b"09" | b"0a" | b"0c" | b"0d") {
                            return None;
                        }
                        i += 6;
                    }
                    _ => return None,
                }
            }
            _ => i += 1,
        }
    }
}

/// The end of the value starting at `text[start]` (valid JSON), or `None` if it is not written
/// as serde_json writes values.
fn scan_value(text: &str, start: usize) -> Option<usize> {
    let b = text.as_bytes();
    let mut i = start;
    let mut depth = 0usize;
    loop {
        match *b.get(i)? {
            b'"' => i = scan_string(b, i)?.0,
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                i += 1;
            }
            b'-' | b'0'..=b'9' => i = scan_number(text, i)?,
            b't' | b'n' => i += 4,
            b'f' => i += 5,
            b',' | b':' => i += 1,
            // Whitespace.
            _ => return None,
        }
        if depth == 0 {
            return Some(i);
        }
    }
}

/// The end of the number starting at `text[start]`, or `None` if serde_json would print the
/// number it parses to otherwise (`1.50`, `1E2`, `-0`, integers beyond 64 bits).
fn scan_number(text: &str, start: usize) -> Option<usize> {
    let b = text.as_bytes();
    let end = start + b[start..].iter().take_while(|c| matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')).count();
    let number = &text[start..end];
    let digits = number.strip_prefix('-').unwrap_or(number);
    // Integers up to 18 digits fit i64 and u64 and print as written (JSON has no leading zeros).
    let plain = number == "0"
        || (digits.len() <= 18 && digits.bytes().all(|c| c.is_ascii_digit()) && !digits.starts_with('0'));
    // Else as serde_json prints the number it parses (a `Value` compares to text as a string).
    if plain || serde_json::from_str::<Value>(number).ok().map(|n| n.to_string()).as_deref() == Some(number) {
        Some(end)
    } else {
        None
    }
}

/// Objects nested deeper than this are left to serde_json (its own limit is 128 levels).
const MAX_KEY_DEPTH: usize = 64;

/// A key in a JSON text: its quoted text's byte range and whether it has escapes.
type KeyText = (std::ops::Range<usize>, bool);

/// Whether every object in `text` — valid JSON whose values [`scan_value`] found written as
/// serde_json writes them — lists its keys as serde_json writes a `Value`'s map: in increasing
/// order without duplicates, at most [`MAX_KEY_DEPTH`] levels deep. Then `text` is what
/// serde_json writes for the `Value` it parses to.
pub(super) fn keys_in_order(text: &str) -> bool {
    let b = text.as_bytes();
    // A key's text (its quoted text's range, whether it has escapes) as a string.
    let key = |(range, escaped): &KeyText| -> Option<Cow<'_, str>> {
        if *escaped {
            serde_json::from_str::<String>(&text[range.clone()]).ok().map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(&text[range.start + 1..range.end - 1]))
        }
    };
    // Per open container: `None` for an array, for an object its previous key.
    let mut open: Vec<Option<Option<KeyText>>> = Vec::new();
    let mut expect_key = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' => {
                open.push(Some(None));
                if open.len() > MAX_KEY_DEPTH {
                    return false;
                }
                expect_key = true;
                i += 1;
            }
            b'[' => {
                open.push(None);
                if open.len() > MAX_KEY_DEPTH {
                    return false;
                }
                expect_key = false;
                i += 1;
            }
            b'}' | b']' => {
                open.pop();
                expect_key = false;
                i += 1;
            }
            b',' => {
                expect_key = matches!(open.last(), Some(Some(_)));
                i += 1;
            }
            b'"' => {
                let Some((end, escaped)) = scan_string(b, i) else { return false };
                if expect_key {
                    let Some(Some(previous)) = open.last_mut() else { return false };
                    let current = (i..end, escaped);
                    // Keys compare as strings: by their bytes (UTF-8), as a `String` orders.
                    if let Some(previous) = previous.as_ref() {
                        let in_order = if previous.1 || escaped {
                            key(previous).zip(key(&current)).is_some_and(|(p, c)| p < c)
                        } else {
                            b[previous.0.start + 1..previous.0.end - 1] < b[i + 1..end - 1]
                        };
                        if !in_order {
                            return false;
                        }
                    }
                    *previous = Some(current);
                    expect_key = false;
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::projection::fixtures::{IRREGULAR, REGULAR, payloads};

    /// The text is taken as it is only when serde_json would write it so; the other texts go
    /// through a `Value` (where the test above shows the state is the same).
    #[test]
    fn only_text_as_serde_json_writes_it_is_taken_as_it_is() {
        let mut members = Vec::new();
        for value in payloads() {
            let text = value.to_string();
            let expected = if value.is_object() { Shape::Object } else { Shape::Other };
            assert_eq!(object_members(&text, &mut members), expected, "{text}");
        }
        let shape = |text: &str| object_members(text, &mut Vec::new());
        for text in IRREGULAR {
            assert_eq!(shape(text), Shape::Irregular, "{text}");
        }
        for text in REGULAR {
            assert_eq!(shape(text), Shape::Object, "{text}");
        }
        assert_eq!(object_members(r#"{"a":{"x":[1,"]}"]},"b":"c"}"#, &mut members), Shape::Object);
        let member = |m: &Member| &r#"{"a":{"x":[1,"]}"]},"b":"c"}"#[m.key.start..m.end];
        assert_eq!(members.iter().map(member).collect::<Vec<_>>(), [r#""a":{"x":[1,"]}"]}"#, r#""b":"c""#]);
    }
}
