//! Element types of tensors, as they travel on the wire and are stored.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// The element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
    /// bfloat16: the upper half of a binary32.
    Bf16,
    /// IEEE 754 binary16.
    F16,
    /// IEEE 754 binary64.
    F64,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 8-bit integer.
    U8,
    /// Boolean, one byte per element (0 or 1).
    Bool,
}

impl DType {
    /// Every dtype, in wire order.
    pub const ALL: [DType; 10] = [
        DType::F32,
        DType::Bf16,
        DType::F16,
        DType::F64,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::Bool,
    ];

    /// Bytes per element in the little-endian wire form.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::Bf16 | DType::F16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// The lowercase name used in SQL and on the command line (`f32`, `bf16`, …).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::Bf16 => "bf16",
            DType::F16 => "f16",
            DType::F64 => "f64",
            DType::I8 => "i8",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::U8 => "u8",
            DType::Bool => "bool",
        }
    }

    /// Whether the elements are floating point.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::Bf16 | DType::F16 | DType::F64)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = CoreError;

    /// Parses a name such as `f32` or `bf16`; also accepts the safetensors and
    /// numpy spellings (`F32`, `BF16`, `float32`, `bfloat16`, `BOOL`, …).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        let dtype = match lower.as_str() {
            "f32" | "float32" | "float" => DType::F32,
            "bf16" | "bfloat16" => DType::Bf16,
            "f16" | "float16" | "half" => DType::F16,
            "f64" | "float64" | "double" => DType::F64,
            "i8" | "int8" => DType::I8,
            "i16" | "int16" => DType::I16,
            "i32" | "int32" => DType::I32,
            "i64" | "int64" => DType::I64,
            "u8" | "uint8" => DType::U8,
            "bool" | "boolean" => DType::Bool,
            _ => {
                let known: Vec<&str> = DType::ALL.iter().map(|d| d.name()).collect();
                return Err(CoreError::invalid(
                    "dtype",
                    format!("unknown dtype {s:?}; use one of {}", known.join(", ")),
                ));
            }
        };
        Ok(dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for dtype in DType::ALL {
            assert_eq!(dtype.name().parse::<DType>(), Ok(dtype));
        }
        assert_eq!("BF16".parse::<DType>(), Ok(DType::Bf16));
        let err = "complex64".parse::<DType>().unwrap_err().to_string();
        assert!(
            err.contains("unknown dtype") && err.contains("bf16"),
            "{err}"
        );
    }
}

/// Widens an IEEE binary16 value (its bits) to f32 exactly. NaN payloads are
/// kept bit for bit in the top of the f32 mantissa, signaling NaNs included
/// (hardware conversions set the quiet bit), so [`narrow_f16`] restores the
/// original bits of every f16.
pub fn widen_f16(bits: u16) -> f32 {
    let sign = ((bits & 0x8000) as u32) << 16;
    let exponent = (bits >> 10) & 0x1F;
    let mantissa = (bits & 0x3FF) as u32;
    match exponent {
        0x1F => f32::from_bits(sign | 0x7F80_0000 | mantissa << 13),
        0 => {
            // Zero or subnormal: mantissa × 2^-24, exact in f32.
            let magnitude = mantissa as f32 * f32::from_bits(0x3380_0000);
            f32::from_bits(sign | magnitude.to_bits())
        }
        _ => f32::from_bits(sign | ((exponent as u32 + 112) << 23) | mantissa << 13),
    }
}

/// The f16 bits of an f32 made by [`widen_f16`].
pub fn narrow_f16(value: f32) -> u16 {
    let bits = value.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xFF) as i32;
    let mantissa = bits & 0x7F_FFFF;
    if exponent == 0xFF {
        return sign | 0x7C00 | (mantissa >> 13) as u16;
    }
    if exponent == 0 && mantissa == 0 {
        return sign;
    }
    let unbiased = exponent - 127;
    if unbiased >= -14 {
        sign | (((unbiased + 15) as u16) << 10) | (mantissa >> 13) as u16
    } else {
        // Subnormal in f16: value / 2^-24 is an integer ≤ 1023.
        let magnitude = f32::from_bits(bits & 0x7FFF_FFFF) / f32::from_bits(0x3380_0000);
        sign | magnitude as u16
    }
}

#[cfg(test)]
mod f16_tests {
    use super::*;

    #[test]
    fn every_f16_widens_and_narrows_back_bit_exactly() {
        for bits in 0..=u16::MAX {
            let wide = widen_f16(bits);
            assert_eq!(narrow_f16(wide), bits, "{bits:#06x}");
            let reference = half::f16::from_bits(bits);
            if !reference.is_nan() {
                assert_eq!(wide, reference.to_f32(), "{bits:#06x}");
            }
        }
    }
}
