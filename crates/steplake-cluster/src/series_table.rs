//! `generate_series` and `range` in a shipped plan: DataFusion resolves the
//! table function to a table whose arguments its codec cannot serialize,
//! so this one ships them itself.
//!
//! ```text
//! b"steplake-series:" | function: u8 (0 generate_series, 1 range)
//!                     | kind: u8 (0 a NULL argument: no rows, 1 integers)
//!                     | start: i64 LE | end: i64 LE | step: i64 LE
//!                     | include_end: u8
//! ```
//!
//! Series of timestamps or dates are refused with an error that says so.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::error::{DataFusionError, Result};
use datafusion::functions_table::generate_series::{
    Empty, GenSeriesArgs, GenerateSeriesTable, GenericSeriesState,
};

/// What an encoded series table starts with.
const SERIES_TAG: &[u8] = b"steplake-series:";
const FUNCTIONS: [&str; 2] = ["generate_series", "range"];
const BODY_LEN: usize = 2 + 3 * 8 + 1;

/// The encoding of `provider` when it is a series table; `Ok(None)` when it
/// is some other table.
pub(crate) fn encode(provider: &dyn TableProvider) -> Result<Option<Vec<u8>>> {
    let any: &dyn std::any::Any = provider;
    let Some(table) = any.downcast_ref::<GenerateSeriesTable>() else {
        return Ok(None);
    };
    let generator = table.as_generator(1)?;
    let generator = generator.read();
    let generator = generator.as_any();
    let mut buf = SERIES_TAG.to_vec();
    if let Some(empty) = generator.downcast_ref::<Empty>() {
        buf.push(function_code(empty.name())?);
        buf.push(0);
        buf.extend_from_slice(&[0; 3 * 8 + 1]);
    } else if let Some(ints) = generator.downcast_ref::<GenericSeriesState<i64>>() {
        buf.push(function_code(ints.name())?);
        buf.push(1);
        for value in [*ints.start(), *ints.end(), *ints.step()] {
            buf.extend_from_slice(&value.to_le_bytes());
        }
        buf.push(u8::from(ints.include_end()));
    } else {
        return Err(DataFusionError::NotImplemented(
            "generate_series and range over timestamps or dates cannot run on a cluster yet; use integers (and cast them), or run the query on one process".into(),
        ));
    }
    Ok(Some(buf))
}

fn function_code(name: &str) -> Result<u8> {
    FUNCTIONS
        .iter()
        .position(|f| *f == name)
        .map(|i| i as u8)
        .ok_or_else(|| {
            DataFusionError::NotImplemented(format!(
                "the table function {name} cannot run on a cluster yet"
            ))
        })
}

/// The series table `buf` encodes, or `None` when `buf` encodes no series.
pub(crate) fn decode(buf: &[u8], schema: SchemaRef) -> Result<Option<Arc<dyn TableProvider>>> {
    let Some(body) = buf.strip_prefix(SERIES_TAG) else {
        return Ok(None);
    };
    let malformed = || DataFusionError::Plan("a shipped generate_series is malformed".into());
    if body.len() != BODY_LEN {
        return Err(malformed());
    }
    let name = *FUNCTIONS.get(body[0] as usize).ok_or_else(malformed)?;
    let int = |i: usize| {
        let start = 2 + 8 * i;
        body[start..start + 8]
            .try_into()
            .map(i64::from_le_bytes)
            .map_err(|_| malformed())
    };
    let args = match body[1] {
        0 => GenSeriesArgs::ContainsNull { name },
        1 => GenSeriesArgs::Int64Args {
            start: int(0)?,
            end: int(1)?,
            step: int(2)?,
            include_end: body[BODY_LEN - 1] != 0,
            name,
        },
        _ => return Err(malformed()),
    };
    Ok(Some(Arc::new(GenerateSeriesTable::new(schema, args))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn integer_series_and_null_arguments_round_trip() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "value",
            DataType::Int64,
            false,
        )]));
        for args in [
            GenSeriesArgs::Int64Args {
                start: -3,
                end: 300,
                step: 7,
                include_end: true,
                name: "generate_series",
            },
            GenSeriesArgs::Int64Args {
                start: 10,
                end: 0,
                step: -2,
                include_end: false,
                name: "range",
            },
            GenSeriesArgs::ContainsNull { name: "range" },
        ] {
            let table = GenerateSeriesTable::new(schema.clone(), args.clone());
            let buf = encode(&table).unwrap().expect("a series table");
            let decoded = decode(&buf, schema.clone()).unwrap().expect("decoded");
            let any: &dyn std::any::Any = decoded.as_ref();
            let decoded = any.downcast_ref::<GenerateSeriesTable>().expect("series");
            assert_eq!(format!("{decoded:?}"), format!("{table:?}"));
        }
    }
}
