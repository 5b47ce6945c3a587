//! The one form of a path a template is matched against. A backend may
//! read `/a//b`, `/a/./b`, `/%61/b` or `/a;x/b` as `/a/b`, where a
//! template does not: such a path would pass a check meant for another
//! operation, or none. With a policy attached, a path not in that form is
//! refused, whatever `unknownOperations` says.

/// Why `path` is not in normal form, if it is not. A trailing `/` is
/// allowed (matched as if absent). One pass over the bytes: it runs on
/// every request a policy checks.
pub fn abnormal(path: &str) -> Option<&'static str> {
    let Some(rest) = path.strip_prefix('/') else {
        return Some("it does not start with /");
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest).as_bytes();
    if rest.is_empty() {
        return None;
    }
    let mut start = 0;
    for (i, &b) in rest.iter().enumerate() {
        let why = match b {
            b'/' => {
                let why = dot_or_empty(&rest[start..i]);
                start = i + 1;
                why
            }
            b';' => Some("a `;` parameter"),
            b'\\' => Some("a backslash"),
            b'%' if encodes_what_it_need_not(&rest[i..]) => {
                Some("a percent-encoded letter, digit, -, ., _, ~, / or backslash")
            }
            _ => None,
        };
        if why.is_some() {
            return why;
        }
    }
    dot_or_empty(&rest[start..])
}

fn dot_or_empty(segment: &[u8]) -> Option<&'static str> {
    match segment {
        b"" => Some("an empty segment (//)"),
        b"." | b".." => Some("a dot segment"),
        _ => None,
    }
}

/// Whether `%XX` at the start of `at` encodes an unreserved character
/// (RFC 3986 §2.3: it means the character itself), `/` or a backslash.
fn encodes_what_it_need_not(at: &[u8]) -> bool {
    let (Some(h), Some(l)) = (
        at.get(1).and_then(|b| hex(*b)),
        at.get(2).and_then(|b| hex(*b)),
    ) else {
        return false;
    };
    let decoded = h * 16 + l;
    decoded.is_ascii_alphanumeric() || b"-._~/\\".contains(&decoded)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::abnormal;

    #[test]
    fn only_the_one_form_passes() {
        for ok in [
            "/",
            "/api/products/12",
            "/api/products/12/",
            "/files/a%20b.json",
            "/q/%3F",
        ] {
            assert_eq!(abnormal(ok), None, "{ok}");
        }
        for bad in [
            "/api//products",
            "/api/./products",
            "/api/x/../products",
            "/api/%70roducts",
            "/api/products%2F12",
            "/api/products%2e",
            "/api/products;a=b/0",
            "/api\\products",
            "/api/%5Cproducts",
            "api/products",
        ] {
            assert!(abnormal(bad).is_some(), "{bad}");
        }
    }
}
