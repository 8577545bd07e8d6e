//! Glob tenant patterns with the semantics of Go's `path/filepath.Match` on
//! Unix (the `tenant_matcher_type: "glob"` of the hashring file).
//!
//! * `*` matches any run of bytes except `/`;
//! * `?` matches one character (UTF-8 rune) except `/`;
//! * `[abc]`, `[a-z]`, `[^a-z]` are character classes (they may match `/`);
//!   a class must hold at least one range, `-` and `]` must be escaped inside;
//! * `\x` matches `x` literally.
//!
//! Matching works on bytes exactly like the Go implementation (including
//! how a `*` skips bytes), so results agree for every input. A malformed
//! pattern makes Go return `ErrBadPattern` for every name; ringest rejects such
//! patterns when the configuration is loaded ([`validate_glob`]).

use crate::error::HashringError;

const SEPARATOR: u8 = b'/';
const RUNE_ERROR: u32 = 0xFFFD;

/// Error for a malformed pattern (Go's `filepath.ErrBadPattern`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BadPattern;

/// Reports whether `name` matches the shell pattern `pattern`.
///
/// Returns [`HashringError::BadPattern`] for a malformed pattern.
pub fn glob_match(pattern: &str, name: &str) -> Result<bool, HashringError> {
    match_bytes(pattern.as_bytes(), name.as_bytes())
        .map_err(|BadPattern| HashringError::BadPattern { pattern: pattern.to_owned() })
}

/// Checks that `pattern` is well formed, i.e. that [`glob_match`] never
/// fails on it.
pub fn validate_glob(pattern: &str) -> Result<(), HashringError> {
    let bad = || HashringError::BadPattern { pattern: pattern.to_owned() };
    let mut rest = pattern.as_bytes();
    while !rest.is_empty() {
        let (_, chunk, r) = scan_chunk(rest);
        rest = r;
        match_chunk(chunk, b"").map_err(|BadPattern| bad())?;
    }
    Ok(())
}

fn match_bytes(mut pattern: &[u8], mut name: &[u8]) -> Result<bool, BadPattern> {
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing star matches the rest unless it holds a separator.
            return Ok(!name.contains(&SEPARATOR));
        }
        // Try the chunk at the current position. The last chunk must consume
        // the whole name.
        match match_chunk(chunk, name)? {
            Some(t) if t.is_empty() || !pattern.is_empty() => {
                name = t;
                continue 'pattern;
            }
            _ => {}
        }
        if star {
            // Let the star swallow i+1 bytes, never a separator.
            let mut i = 0;
            while i < name.len() && name[i] != SEPARATOR {
                if let Some(t) = match_chunk(chunk, &name[i + 1..])? {
                    if pattern.is_empty() && !t.is_empty() {
                        i += 1;
                        continue;
                    }
                    name = t;
                    continue 'pattern;
                }
                i += 1;
            }
        }
        // No match: still report a malformed remainder of the pattern.
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            match_chunk(chunk, b"")?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Splits off the leading stars and the following star-free chunk.
fn scan_chunk(mut pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let mut star = false;
    while let [b'*', rest @ ..] = pattern {
        pattern = rest;
        star = true;
    }
    let mut in_range = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            // A dangling backslash is left for match_chunk to report.
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &pattern[..i], &pattern[i..])
}

/// Matches `chunk` (no stars) at the start of `s`; `Ok(Some(rest))` on a
/// match. The whole chunk is always parsed so syntax errors surface even when
/// the match already failed.
fn match_chunk<'s>(mut chunk: &[u8], mut s: &'s [u8]) -> Result<Option<&'s [u8]>, BadPattern> {
    let mut failed = false;
    while let Some(&c) = chunk.first() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c {
            b'[' => {
                let mut r = 0u32;
                if !failed {
                    let (rune, n) = decode_rune(s);
                    r = rune;
                    s = &s[n..];
                }
                chunk = &chunk[1..];
                let mut negated = false;
                if let [b'^', rest @ ..] = chunk {
                    negated = true;
                    chunk = rest;
                }
                let mut matched = false;
                let mut nrange = 0usize;
                loop {
                    if nrange > 0
                        && let [b']', rest @ ..] = chunk
                    {
                        chunk = rest;
                        break;
                    }
                    let (lo, rest) = get_esc(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk[0] == b'-' {
                        let (h, rest) = get_esc(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    nrange += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            b'?' => {
                if !failed {
                    if s[0] == SEPARATOR {
                        failed = true;
                    }
                    let (_, n) = decode_rune(s);
                    s = &s[n..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                if c == b'\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return Err(BadPattern);
                    }
                }
                if !failed {
                    if chunk[0] != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    if failed { Ok(None) } else { Ok(Some(s)) }
}

/// One (possibly escaped) character of a class; the chunk must go on after it.
fn get_esc(chunk: &[u8]) -> Result<(u32, &[u8]), BadPattern> {
    let mut chunk = match chunk.first() {
        None | Some(b'-') | Some(b']') => return Err(BadPattern),
        Some(_) => chunk,
    };
    if chunk[0] == b'\\' {
        chunk = &chunk[1..];
        if chunk.is_empty() {
            return Err(BadPattern);
        }
    }
    let (r, n) = decode_rune(chunk);
    if r == RUNE_ERROR && n == 1 {
        return Err(BadPattern);
    }
    let rest = &chunk[n..];
    if rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((r, rest))
}

/// Decodes one UTF-8 rune like Go's `utf8.DecodeRune`: invalid input yields
/// `(U+FFFD, 1)`, empty input `(U+FFFD, 0)`.
fn decode_rune(s: &[u8]) -> (u32, usize) {
    if s.is_empty() {
        return (RUNE_ERROR, 0);
    }
    if s[0] < 0x80 {
        return (u32::from(s[0]), 1);
    }
    let head = &s[..s.len().min(4)];
    let valid = match std::str::from_utf8(head) {
        Ok(v) => v,
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default(),
    };
    match valid.chars().next() {
        Some(c) => (u32::from(c), c.len_utf8()),
        None => (RUNE_ERROR, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> Result<bool, ()> {
        glob_match(p, n).map_err(|_| ())
    }

    // Cases in the spirit of Go's path/filepath match tests (written anew).
    #[test]
    fn go_semantics() {
        let cases: &[(&str, &str, Result<bool, ()>)] = &[
            ("abc", "abc", Ok(true)),
            ("*", "abc", Ok(true)),
            ("*c", "abc", Ok(true)),
            ("a*", "a", Ok(true)),
            ("a*", "abc", Ok(true)),
            ("a*", "ab/c", Ok(false)),
            ("a*/b", "abc/b", Ok(true)),
            ("a*/b", "a/c/b", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Ok(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Ok(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Ok(false)),
            ("ab[c]", "abc", Ok(true)),
            ("ab[b-d]", "abc", Ok(true)),
            ("ab[e-g]", "abc", Ok(false)),
            ("ab[^c]", "abc", Ok(false)),
            ("ab[^b-d]", "abc", Ok(false)),
            ("ab[^e-g]", "abc", Ok(true)),
            ("a\\*b", "a*b", Ok(true)),
            ("a\\*b", "ab", Ok(false)),
            ("a?b", "a☺b", Ok(true)),
            ("a[^a]b", "a☺b", Ok(true)),
            ("a???b", "a☺b", Ok(false)),
            ("a[^a][^a][^a]b", "a☺b", Ok(false)),
            ("[a-ζ]*", "α", Ok(true)),
            ("*[a-ζ]", "A", Ok(false)),
            ("a?b", "a/b", Ok(false)),
            ("a*b", "a/b", Ok(false)),
            ("[\\]a]", "]", Ok(true)),
            ("[\\-]", "-", Ok(true)),
            ("[x\\-]", "x", Ok(true)),
            ("[x\\-]", "-", Ok(true)),
            ("[x\\-]", "z", Ok(false)),
            ("[\\-x]", "x", Ok(true)),
            ("[\\-x]", "-", Ok(true)),
            ("[\\-x]", "a", Ok(false)),
            ("[]a]", "]", Err(())),
            ("[-]", "-", Err(())),
            ("[x-]", "x", Err(())),
            ("[x-]", "-", Err(())),
            ("[x-]", "z", Err(())),
            ("[-x]", "x", Err(())),
            ("[-x]", "-", Err(())),
            ("[-x]", "a", Err(())),
            ("\\", "a", Err(())),
            ("[a-b-c]", "a", Err(())),
            ("[", "a", Err(())),
            ("[^", "a", Err(())),
            ("[^bc", "a", Err(())),
            ("a[", "a", Err(())),
            ("a[", "ab", Err(())),
            ("a[", "x", Err(())),
            ("a/b[", "x", Err(())),
            ("*x", "xxx", Ok(true)),
            ("team-*", "team-a", Ok(true)),
            ("team-*", "team-", Ok(true)),
            ("team-*", "team", Ok(false)),
            ("team-?", "team-ab", Ok(false)),
            ("", "", Ok(true)),
            ("", "a", Ok(false)),
            ("[*]", "*", Ok(true)),
            ("[*]", "a", Ok(false)),
        ];
        for (p, n, want) in cases {
            assert_eq!(m(p, n), *want, "pattern {p:?} name {n:?}");
            assert_eq!(validate_glob(p).is_ok(), want.is_ok(), "validate {p:?}");
        }
    }

    #[test]
    fn decode() {
        assert_eq!(decode_rune(b"a"), (97, 1));
        assert_eq!(decode_rune("☺x".as_bytes()), ('☺' as u32, 3));
        assert_eq!(decode_rune(&[0xA9, 0x41]), (RUNE_ERROR, 1));
        assert_eq!(decode_rune(b""), (RUNE_ERROR, 0));
        assert_eq!(decode_rune("😀".as_bytes()), ('😀' as u32, 4));
    }
}
