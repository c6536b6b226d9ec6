//! The one piece of text generation left in the kernels: register-block unrolling.
//!
//! WGSL has no way to declare "PX x CB4 accumulators" as registers, so a line that ends in
//! `// @unroll(RANGE)` is written once per `i` in `RANGE` (`N` means `0..N`; `A..B` also works),
//! with every `{EXPR}` in it replaced by the value of `EXPR`: an integer expression in `i`, the
//! kernel's constants, `+ - * / %` and parentheses. Everything else in a `.wgsl` file is plain
//! WGSL; the same constants reach the shader as `override` values (see `kernels.rs`).
//! An unknown name, a division by zero or a malformed expression is an error, not a zero.
//!
//! Code that two kernels' sources share lives in one file (`SNIPPETS`), written in where a line
//! is `// @splice(FILE)` (in a function body, or at the top level), before the unrolling.

use crate::error::{Error, Result};

/// The files that `// @splice(FILE)` lines name.
const SNIPPETS: &[(&str, &str)] = &[
    (
        "lanes_rows.wgsl",
        include_str!("../../shaders/lanes_rows.wgsl"),
    ),
    ("texel.wgsl", include_str!("../../shaders/texel.wgsl")),
    ("pick.wgsl", include_str!("../../shaders/pick.wgsl")),
    (
        "norm_params.wgsl",
        include_str!("../../shaders/norm_params.wgsl"),
    ),
];

/// `source` with each `// @splice(FILE)` line replaced by that snippet's lines.
fn splice(source: &str) -> Result<String> {
    let mut out = String::with_capacity(source.len());
    for line in source.lines() {
        let name = line
            .trim_start()
            .strip_prefix("// @splice(")
            .and_then(|rest| rest.strip_suffix(')'));
        match name {
            Some(name) => {
                let (_, text) = SNIPPETS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .ok_or_else(|| Error::Kernel(format!("no snippet {name:?} to splice")))?;
                out.push_str(text);
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// Expands the `@splice` and then the `@unroll` lines of `source` with the constants `consts`.
pub(crate) fn unroll(source: &str, consts: &[(&str, u32)]) -> Result<String> {
    let source = splice(source)?;
    let mut out = String::with_capacity(source.len() * 2);
    for (number, line) in source.lines().enumerate() {
        let Some((code, range)) = line
            .split_once("// @unroll(")
            .and_then(|(code, rest)| rest.strip_suffix(')').map(|r| (code, r)))
        else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let at = |e: String| Error::Kernel(format!("line {}: {e}", number + 1));
        let (lo, hi) = match range.split_once("..") {
            Some((a, b)) => (eval(a, 0, consts), eval(b, 0, consts)),
            None => (Ok(0), eval(range, 0, consts)),
        };
        let (lo, hi) = (lo.map_err(at)?, hi.map_err(at)?);
        for i in lo..hi {
            let mut rest = code.trim_end();
            while let Some(open) = rest.find('{') {
                let close = rest[open..]
                    .find('}')
                    .map(|c| open + c)
                    .ok_or_else(|| at(format!("unclosed '{{' in {code:?}")))?;
                out.push_str(&rest[..open]);
                let value = eval(&rest[open + 1..close], i, consts).map_err(at)?;
                out.push_str(&value.to_string());
                rest = &rest[close + 1..];
            }
            out.push_str(rest);
            out.push('\n');
        }
    }
    Ok(out)
}

/// The value of `expr` with `i` and `consts`.
fn eval(expr: &str, i: i64, consts: &[(&str, u32)]) -> std::result::Result<i64, String> {
    let mut e = Expr {
        text: expr.as_bytes(),
        pos: 0,
        i,
        consts,
    };
    let v = e.sum()?;
    match e.peek() {
        None => Ok(v),
        Some(c) => Err(format!("unexpected {:?} in {expr:?}", c as char)),
    }
}

/// A recursive-descent evaluator with the usual precedence.
struct Expr<'a> {
    text: &'a [u8],
    pos: usize,
    i: i64,
    consts: &'a [(&'a str, u32)],
}

type Value = std::result::Result<i64, String>;

impl Expr<'_> {
    fn peek(&mut self) -> Option<u8> {
        while self.text.get(self.pos) == Some(&b' ') {
            self.pos += 1;
        }
        self.text.get(self.pos).copied()
    }

    fn sum(&mut self) -> Value {
        let mut v = self.product()?;
        while let Some(op @ (b'+' | b'-')) = self.peek() {
            self.pos += 1;
            let r = self.product()?;
            v = if op == b'+' { v + r } else { v - r };
        }
        Ok(v)
    }

    fn product(&mut self) -> Value {
        let mut v = self.factor()?;
        while let Some(op @ (b'*' | b'/' | b'%')) = self.peek() {
            self.pos += 1;
            let r = self.factor()?;
            v = match op {
                b'*' => v * r,
                b'/' => v.checked_div(r).ok_or("division by zero")?,
                _ => v.checked_rem(r).ok_or("division by zero")?,
            };
        }
        Ok(v)
    }

    fn factor(&mut self) -> Value {
        match self.peek() {
            Some(b'(') => {
                self.pos += 1;
                let v = self.sum()?;
                if self.peek() != Some(b')') {
                    return Err("missing ')'".into());
                }
                self.pos += 1;
                Ok(v)
            }
            Some(b'-') => {
                self.pos += 1;
                Ok(-self.factor()?)
            }
            _ => {
                let start = self.pos;
                while self
                    .text
                    .get(self.pos)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                {
                    self.pos += 1;
                }
                let word = std::str::from_utf8(&self.text[start..self.pos]).unwrap_or("");
                if word == "i" {
                    return Ok(self.i);
                }
                if let Ok(v) = word.parse() {
                    return Ok(v);
                }
                self.consts
                    .iter()
                    .find(|(n, _)| *n == word)
                    .map(|&(_, v)| i64::from(v))
                    .ok_or_else(|| format!("unknown name {word:?}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::unroll;

    #[test]
    fn unroll_repeats_lines_and_evaluates_expressions() {
        let t = "override N: u32;\nvar a{i} = {i-N}; // @unroll(N..2*N)\nx{i}; // @unroll(N)\n";
        assert_eq!(
            unroll(t, &[("N", 2)]).unwrap(),
            "override N: u32;\nvar a2 = 0;\nvar a3 = 1;\nx0;\nx1;\n"
        );
        let t = "a{i/N}b{N+i%N}c{(i+1)*2}; // @unroll(N*2)\n";
        assert_eq!(
            unroll(t, &[("N", 3)]).unwrap(),
            "a0b3c2;\na0b4c4;\na0b5c6;\na1b3c8;\na1b4c10;\na1b5c12;\n"
        );
    }

    #[test]
    fn splice_writes_the_snippet_in_place_and_refuses_unknown_ones() {
        let t = "fn f() {\n    // @splice(lanes_rows.wgsl)\n}\n";
        let consts: Vec<(&str, u32)> = ["R", "FW", "FH", "K", "SG", "V4", "S0", "MV", "TEX"]
            .into_iter()
            .zip([1, 1, 1, 1, 1, 0, 0, 0, 0])
            .collect();
        let out = unroll(t, &consts).unwrap();
        assert!(out.starts_with("fn f() {\n// The rows of taps"), "{out}");
        assert!(out.contains("let a0 = subgroupBroadcast(v0, 0u);"), "{out}");
        assert!(out.ends_with("}\n"));
        assert!(unroll("// @splice(nothing.wgsl)\n", &[]).is_err());
    }

    #[test]
    fn unroll_rejects_unknown_names_and_bad_expressions() {
        for bad in [
            "x{i+M}; // @unroll(2)",
            "x{i}; // @unroll(M)",
            "x{i/0}; // @unroll(2)",
            "x{(i+1}; // @unroll(2)",
            "x{i 1}; // @unroll(2)",
            "x{i; // @unroll(2)",
        ] {
            let e = unroll(bad, &[("N", 2)]).unwrap_err().to_string();
            assert!(e.contains("line 1"), "{bad}: {e}");
        }
    }
}
