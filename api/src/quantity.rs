//! Kubernetes resource quantities as whole bytes.
//!
//! Grammar (k8s.io/apimachinery `resource.Quantity`):
//! `<sign?><digits>[.<digits>]<suffix>` where the suffix is a binary SI unit
//! (`Ki`..`Ei`), a decimal SI unit (`m`, ``, `k`, `M`..`E`) or a decimal
//! exponent (`e3`, `E-2`). Like `Quantity.Value()`, fractions of a byte round up.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    #[error("quantity {0:?} is empty")]
    Empty(String),
    #[error("quantity {0:?} is not a number with an optional unit (e.g. 10Gi, 500M, 1e9)")]
    Malformed(String),
    #[error("quantity {0:?} is negative; a size must be positive")]
    Negative(String),
    #[error("quantity {0:?} is larger than 2^64-1 bytes")]
    TooLarge(String),
}

/// Parse a quantity into bytes, rounding any fraction up.
pub fn parse_quantity_bytes(input: &str) -> Result<u64, QuantityError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(QuantityError::Empty(input.to_string()));
    }
    let malformed = || QuantityError::Malformed(input.to_string());
    let too_large = || QuantityError::TooLarge(input.to_string());

    let (negative, rest) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return Err(malformed());
    }
    if frac.contains('.') {
        return Err(malformed());
    }

    // numerator / denominator is the exact value; both stay within u128.
    let mut numerator: u128 = 0;
    for d in whole.bytes().chain(frac.bytes()) {
        numerator = numerator
            .checked_mul(10)
            .and_then(|n| n.checked_add(u128::from(d - b'0')))
            .ok_or_else(too_large)?;
    }
    let mut denominator: u128 = 10u128
        .checked_pow(frac.len() as u32)
        .ok_or_else(too_large)?;

    let (mul, div): (u128, u128) = match suffix {
        "" => (1, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        "m" => (1, 1000),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000, 1),
        exp if exp.starts_with(['e', 'E']) => {
            let e: i32 = exp[1..].parse().map_err(|_| malformed())?;
            if !(-38..=38).contains(&e) {
                return Err(too_large());
            }
            let p = 10u128.pow(e.unsigned_abs());
            if e >= 0 { (p, 1) } else { (1, p) }
        }
        _ => return Err(malformed()),
    };
    numerator = numerator.checked_mul(mul).ok_or_else(too_large)?;
    denominator = denominator.checked_mul(div).ok_or_else(too_large)?;

    if negative && numerator != 0 {
        return Err(QuantityError::Negative(input.to_string()));
    }
    let value = numerator.div_ceil(denominator);
    u64::try_from(value).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let ok: &[(&str, u64)] = &[
            ("0", 0),
            ("1", 1),
            ("10Gi", 10 << 30),
            ("1.5Gi", 3 << 29),
            ("500M", 500_000_000),
            ("1k", 1000),
            ("1e3", 1000),
            ("1E9", 1_000_000_000),
            ("1500m", 2),
            ("0.1", 1),
            (".5Ki", 512),
            ("5.", 5),
            ("+7Mi", 7 << 20),
            (" 2Ti ", 2 << 40),
            ("-0", 0),
            ("1e-3", 1),
        ];
        for (q, want) in ok {
            assert_eq!(parse_quantity_bytes(q), Ok(*want), "{q}");
        }
        let bad = [
            "", "Gi", "10GB", "10 Gi", "1.2.3", "abc", "1e", "1ex", "-1Gi", "20Ei", "1e40", ".",
        ];
        for q in bad {
            assert!(parse_quantity_bytes(q).is_err(), "{q:?} should fail");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_quantity_bytes(&s);
        }

        #[test]
        fn binary_units_roundtrip(n in 0u64..(1 << 30)) {
            proptest::prop_assert_eq!(parse_quantity_bytes(&format!("{n}Mi")), Ok(n << 20));
        }
    }
}
