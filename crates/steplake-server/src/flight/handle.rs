//! Statement handles: everything a statement needs, carried by the client.
//!
//! A handle is the SQL text plus, once the client bound them, the parameter
//! values as one Arrow IPC row. Tickets of plain statements and handles of
//! prepared statements are the same thing, so any connection to this server
//! can answer any of them and the server keeps no state between calls
//! (Flight SQL's stateless prepared statements: binding parameters returns
//! an updated handle).

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use datafusion::common::ScalarValue;
use prost::Message;
use tonic::Status;

/// The encoded form of a statement handle.
#[derive(Clone, PartialEq, Message)]
pub struct StatementHandle {
    /// The SQL text.
    #[prost(string, tag = "1")]
    pub sql: String,
    /// The bound parameters: an Arrow IPC stream of one row; empty when none.
    #[prost(bytes = "vec", tag = "2")]
    pub parameters: Vec<u8>,
}

impl StatementHandle {
    /// A handle for `sql` with no parameters bound.
    pub fn new(sql: impl Into<String>) -> Self {
        StatementHandle {
            sql: sql.into(),
            parameters: Vec::new(),
        }
    }

    /// Decodes a handle a client sent back.
    pub fn decode_from(bytes: &[u8]) -> Result<Self, Status> {
        StatementHandle::decode(bytes).map_err(|e| {
            Status::invalid_argument(format!(
                "not a steplake statement handle ({e}); prepare the statement again"
            ))
        })
    }

    /// The handle with `row` (one row of parameter values) bound.
    pub fn with_parameters(self, row: &RecordBatch) -> Result<Self, Status> {
        if row.num_rows() != 1 {
            return Err(Status::invalid_argument(format!(
                "bind exactly one row of parameters, got {} rows",
                row.num_rows()
            )));
        }
        let mut parameters = Vec::new();
        let mut writer = StreamWriter::try_new(&mut parameters, row.schema_ref())
            .map_err(|e| Status::internal(format!("cannot encode the parameters: {e}")))?;
        writer
            .write(row)
            .and_then(|()| writer.finish())
            .map_err(|e| Status::internal(format!("cannot encode the parameters: {e}")))?;
        drop(writer);
        Ok(StatementHandle {
            sql: self.sql,
            parameters,
        })
    }

    /// The bound parameter values, `$1` first; empty when none are bound.
    pub fn parameter_values(&self) -> Result<Vec<ScalarValue>, Status> {
        if self.parameters.is_empty() {
            return Ok(Vec::new());
        }
        let bad = |e: &dyn std::fmt::Display| {
            Status::invalid_argument(format!(
                "the statement handle's parameters cannot be read ({e}); bind them again"
            ))
        };
        let reader =
            StreamReader::try_new(self.parameters.as_slice(), None).map_err(|e| bad(&e))?;
        let mut values = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| bad(&e))?;
            for column in batch.columns() {
                values.push(ScalarValue::try_from_array(column, 0).map_err(|e| bad(&e))?);
            }
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn parameters_survive_the_round_trip() {
        let row = RecordBatch::try_from_iter([
            ("$1", Arc::new(StringArray::from(vec!["loss"])) as _),
            ("$2", Arc::new(Int64Array::from(vec![42])) as _),
        ])
        .expect("batch");
        let handle = StatementHandle::new("SELECT $1, $2")
            .with_parameters(&row)
            .expect("bind");
        let decoded = StatementHandle::decode_from(&handle.encode_to_vec()).expect("decode");
        assert_eq!(decoded.sql, "SELECT $1, $2");
        assert_eq!(
            decoded.parameter_values().expect("values"),
            vec![ScalarValue::from("loss"), ScalarValue::Int64(Some(42))]
        );
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let error = StatementHandle::decode_from(&[0xff, 0xff, 0xff]).expect_err("garbage");
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert!(error.message().contains("prepare the statement again"));
    }

    #[test]
    fn two_rows_are_refused() {
        let rows =
            RecordBatch::try_from_iter([("$1", Arc::new(Int64Array::from(vec![1, 2])) as _)])
                .expect("batch");
        let error = StatementHandle::new("SELECT $1")
            .with_parameters(&rows)
            .expect_err("two rows");
        assert!(error.message().contains("exactly one row"));
    }
}
