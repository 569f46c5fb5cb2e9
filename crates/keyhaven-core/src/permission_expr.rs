//! Permission expressions of a verification request: names joined by `AND` and `OR`,
//! grouped by parentheses — `orders:read AND (orders:write OR admin)`.
//!
//! `AND` binds tighter than `OR`, as in SQL. The operators are words in capitals;
//! anything else between spaces or parentheses is a permission name. A list of
//! permissions (the older form) means all of them: [`Requirement`] covers both.

use crate::error::DomainError;

/// Longest expression accepted.
pub const MAX_LEN: usize = 1000;
/// Deepest nesting of parentheses accepted.
pub const MAX_DEPTH: usize = 32;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermissionExpr {
    /// One permission.
    Name(Box<str>),
    /// Every operand.
    And(Vec<PermissionExpr>),
    /// At least one operand.
    Or(Vec<PermissionExpr>),
}

/// What a verification requires of a key's permissions.
pub trait Requirement {
    /// Whether a key holding the permissions `has` says yes to satisfies it.
    fn satisfied_by(&self, has: &dyn Fn(&str) -> bool) -> bool;
}

impl<S: AsRef<str>> Requirement for [S] {
    fn satisfied_by(&self, has: &dyn Fn(&str) -> bool) -> bool {
        self.iter().all(|p| has(p.as_ref()))
    }
}

impl<S: AsRef<str>> Requirement for Vec<S> {
    fn satisfied_by(&self, has: &dyn Fn(&str) -> bool) -> bool {
        self.as_slice().satisfied_by(has)
    }
}

impl<S: AsRef<str>, const N: usize> Requirement for [S; N] {
    fn satisfied_by(&self, has: &dyn Fn(&str) -> bool) -> bool {
        self.as_slice().satisfied_by(has)
    }
}

impl Requirement for PermissionExpr {
    fn satisfied_by(&self, has: &dyn Fn(&str) -> bool) -> bool {
        match self {
            PermissionExpr::Name(n) => has(n),
            PermissionExpr::And(xs) => xs.iter().all(|x| x.satisfied_by(has)),
            PermissionExpr::Or(xs) => xs.iter().any(|x| x.satisfied_by(has)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    Open,
    Close,
    And,
    Or,
    Name(&'a str),
}

fn tokens(s: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    fn word<'a>(out: &mut Vec<Token<'a>>, w: &'a str) {
        out.push(match w {
            "AND" => Token::And,
            "OR" => Token::Or,
            _ => Token::Name(w),
        })
    }
    for (i, c) in s.char_indices() {
        if c == '(' || c == ')' || c.is_whitespace() {
            if let Some(b) = start.take() {
                word(&mut out, &s[b..i]);
            }
            if c == '(' {
                out.push(Token::Open);
            } else if c == ')' {
                out.push(Token::Close);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(b) = start {
        word(&mut out, &s[b..]);
    }
    out
}

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    at: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Token<'a>> {
        self.tokens.get(self.at)
    }

    fn or(&mut self, depth: usize) -> Result<PermissionExpr, String> {
        let mut terms = vec![self.and(depth)?];
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            terms.push(self.and(depth)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            PermissionExpr::Or(terms)
        })
    }

    fn and(&mut self, depth: usize) -> Result<PermissionExpr, String> {
        let mut factors = vec![self.atom(depth)?];
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            factors.push(self.atom(depth)?);
        }
        Ok(if factors.len() == 1 {
            factors.remove(0)
        } else {
            PermissionExpr::And(factors)
        })
    }

    fn atom(&mut self, depth: usize) -> Result<PermissionExpr, String> {
        match self.tokens.get(self.at).cloned() {
            Some(Token::Name(n)) => {
                self.at += 1;
                crate::permission::validate_scope(n, "permissions").map_err(|e| e.to_string())?;
                Ok(PermissionExpr::Name(n.into()))
            }
            Some(Token::Open) => {
                if depth >= MAX_DEPTH {
                    return Err(format!("parentheses nest deeper than {MAX_DEPTH}"));
                }
                self.at += 1;
                let inner = self.or(depth + 1)?;
                if self.peek() != Some(&Token::Close) {
                    return Err("a parenthesis is not closed".into());
                }
                self.at += 1;
                Ok(inner)
            }
            Some(Token::Close) => Err("a closing parenthesis has no opening one".into()),
            Some(Token::And) | Some(Token::Or) => {
                Err("AND and OR need a permission on each side".into())
            }
            None => Err("the expression ends where a permission is expected".into()),
        }
    }
}

/// Parses an expression, or explains (as a 400 on `permissions`) why it is malformed.
pub fn parse(s: &str) -> Result<PermissionExpr, DomainError> {
    let bad = |why: String| {
        DomainError::invalid(
            "invalid_permissions",
            "permissions",
            format!("permissions is not a valid expression: {why}"),
        )
    };
    if s.len() > MAX_LEN {
        return Err(bad(format!("longer than {MAX_LEN} characters")));
    }
    if s.trim().is_empty() {
        return Err(bad("it is empty".into()));
    }
    let mut p = Parser {
        tokens: tokens(s),
        at: 0,
    };
    let e = p.or(0).map_err(bad)?;
    if p.at != p.tokens.len() {
        return Err(bad("two permissions need AND or OR between them".into()));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holds(perms: &'static [&'static str]) -> impl Fn(&str) -> bool {
        move |p| perms.contains(&p)
    }

    #[test]
    fn and_binds_tighter_than_or_and_parentheses_group() {
        let e = parse("orders:read AND (orders:write OR admin)").unwrap();
        assert!(e.satisfied_by(&holds(&["orders:read", "admin"])));
        assert!(e.satisfied_by(&holds(&["orders:read", "orders:write"])));
        assert!(!e.satisfied_by(&holds(&["orders:read"])));
        assert!(!e.satisfied_by(&holds(&["admin"])));
        // Without parentheses: (a AND b) OR c.
        let e = parse("a AND b OR c").unwrap();
        assert!(e.satisfied_by(&holds(&["c"])));
        assert!(e.satisfied_by(&holds(&["a", "b"])));
        assert!(!e.satisfied_by(&holds(&["a"])));
        assert_eq!(
            parse("  single  ").unwrap(),
            PermissionExpr::Name("single".into())
        );
        assert!(parse("((x))").unwrap().satisfied_by(&holds(&["x"])));
    }

    #[test]
    fn malformed_expressions_are_refused_on_permissions() {
        for bad in [
            "",
            "   ",
            "a AND",
            "OR b",
            "a b",
            "(a",
            "a)",
            "()",
            "a AND AND b",
            "a OR (b AND)",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(
                matches!(e, DomainError::Invalid { ref param, .. } if param.as_deref() == Some("permissions")),
                "{bad}: {e:?}"
            );
        }
        assert!(parse(&"a OR ".repeat(300)).is_err());
        assert!(parse(&format!("{}a{}", "(".repeat(40), ")".repeat(40))).is_err());
        assert!(parse("a\u{0}b").is_err());
    }

    #[test]
    fn a_list_requires_all_of_its_entries() {
        let list = vec!["a", "b"];
        assert!(list.satisfied_by(&holds(&["a", "b", "c"])));
        assert!(!list.satisfied_by(&holds(&["a"])));
        let empty: Vec<String> = Vec::new();
        assert!(empty.satisfied_by(&holds(&[])));
    }
}
