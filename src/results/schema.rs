//! Stored rows declared once. [`table!`] declares a row struct and, from the same lines, its
//! columns (name, polars type, nullability, what a file written before the column existed
//! holds), its frame writer and its frame reader, so a column cannot be written under one
//! name and read under another.

use std::path::Path;

use polars::prelude::*;

use crate::error::{Error, Result};

/// What a file written before a column existed reads as.
#[derive(Debug, Clone)]
pub enum Missing<T> {
    /// Every stored file has the column: a file without it is not one of ours.
    Required,
    /// This value in every row.
    Value(T),
    /// The value of another column of the same type (a renamed or generalised column).
    Column(&'static str),
}

/// One column of a stored row.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    pub name: &'static str,
    pub dtype: DataType,
    pub nullable: bool,
    /// Whether files written before this column existed are still read (with a default).
    pub defaulted: bool,
}

impl ColumnSpec {
    pub fn of<T: Cell>(name: &'static str, missing: Missing<T>) -> Self {
        ColumnSpec {
            name,
            dtype: T::dtype(),
            nullable: T::NULLABLE,
            defaulted: !matches!(missing, Missing::Required),
        }
    }
}

/// A Rust type stored as one parquet column.
pub trait Cell: Sized + Clone {
    /// Whether the column holds nulls (`Option`); other types read a null as their default.
    const NULLABLE: bool;
    /// The type's name in error messages.
    const WHAT: &'static str;
    fn dtype() -> DataType;
    fn column<'a>(name: &str, values: impl Iterator<Item = &'a Self>) -> Column
    where
        Self: 'a;
    /// The column's values, `None` when it has another type.
    fn read(column: &Column) -> Option<Vec<Self>>;
}

impl Cell for String {
    const NULLABLE: bool = false;
    const WHAT: &'static str = "text";
    fn dtype() -> DataType {
        DataType::String
    }
    fn column<'a>(name: &str, values: impl Iterator<Item = &'a Self>) -> Column {
        Column::new(
            name.into(),
            values.map(String::as_str).collect::<Vec<&str>>(),
        )
    }
    fn read(column: &Column) -> Option<Vec<Self>> {
        let values = column.str().ok()?;
        Some(
            values
                .iter()
                .map(|v| v.unwrap_or_default().into())
                .collect(),
        )
    }
}

impl Cell for Option<String> {
    const NULLABLE: bool = true;
    const WHAT: &'static str = "text";
    fn dtype() -> DataType {
        DataType::String
    }
    fn column<'a>(name: &str, values: impl Iterator<Item = &'a Self>) -> Column {
        Column::new(
            name.into(),
            values.map(Option::as_deref).collect::<Vec<Option<&str>>>(),
        )
    }
    fn read(column: &Column) -> Option<Vec<Self>> {
        let values = column.str().ok()?;
        Some(values.iter().map(|v| v.map(String::from)).collect())
    }
}

impl Cell for i64 {
    const NULLABLE: bool = false;
    const WHAT: &'static str = "integer";
    fn dtype() -> DataType {
        DataType::Int64
    }
    fn column<'a>(name: &str, values: impl Iterator<Item = &'a Self>) -> Column {
        Column::new(name.into(), values.copied().collect::<Vec<i64>>())
    }
    fn read(column: &Column) -> Option<Vec<Self>> {
        let values = column.i64().ok()?;
        Some(values.iter().map(Option::unwrap_or_default).collect())
    }
}

impl Cell for Option<i64> {
    const NULLABLE: bool = true;
    const WHAT: &'static str = "integer";
    fn dtype() -> DataType {
        DataType::Int64
    }
    fn column<'a>(name: &str, values: impl Iterator<Item = &'a Self>) -> Column {
        Column::new(name.into(), values.copied().collect::<Vec<Option<i64>>>())
    }
    fn read(column: &Column) -> Option<Vec<Self>> {
        Some(column.i64().ok()?.iter().collect())
    }
}

impl Cell for f64 {
    const NULLABLE: bool = false;
    const WHAT: &'static str = "float";
    fn dtype() -> DataType {
        DataType::Float64
    }
    fn column<'a>(name: &str, values: impl Iterator<Item = &'a Self>) -> Column {
        Column::new(name.into(), values.copied().collect::<Vec<f64>>())
    }
    /// A null (never written by this crate) reads as NaN, which no mean hides.
    fn read(column: &Column) -> Option<Vec<Self>> {
        let values = column.f64().ok()?;
        Some(values.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    }
}

impl Cell for Option<f64> {
    const NULLABLE: bool = true;
    const WHAT: &'static str = "float";
    fn dtype() -> DataType {
        DataType::Float64
    }
    fn column<'a>(name: &str, values: impl Iterator<Item = &'a Self>) -> Column {
        Column::new(name.into(), values.copied().collect::<Vec<Option<f64>>>())
    }
    fn read(column: &Column) -> Option<Vec<Self>> {
        Some(column.f64().ok()?.iter().collect())
    }
}

/// A row type declared with [`table!`].
pub trait Table: Sized {
    /// The columns, in file order.
    fn columns() -> Vec<ColumnSpec>;
    /// One column per field, `rows` in order.
    fn to_columns(rows: &[Self]) -> Vec<Column>;
    /// The rows of a frame read from `path` (named in errors), older layouts included.
    fn from_frame(path: &Path, frame: &DataFrame) -> Result<Vec<Self>>;

    /// The rows as a frame.
    fn frame(rows: &[Self]) -> Result<DataFrame> {
        DataFrame::new(rows.len(), Self::to_columns(rows)).map_err(|source| Error::Parquet {
            path: "<frame>".into(),
            source,
        })
    }
}

/// Writes `frame` to the parquet file `path` (atomically).
pub fn write_frame(path: &Path, frame: &mut DataFrame) -> Result<()> {
    crate::atomic::write_with(path, |file| {
        ParquetWriter::new(file)
            .finish(frame)
            .map(drop)
            .map_err(|source| Error::Parquet {
                path: path.to_path_buf(),
                source,
            })
    })
}

/// Reads the parquet file `path` whole (the same reader the Hub's datasets are read with).
pub use crate::data::hub::read_parquet as read_frame;

/// Reads column `name` of `frame` (stored at `path`) as `T`, applying `missing` when the
/// file predates the column.
pub fn read<T: Cell>(
    path: &Path,
    frame: &DataFrame,
    name: &str,
    missing: Missing<T>,
) -> Result<Vec<T>> {
    let wrong = || Error::Results {
        path: path.to_path_buf(),
        message: format!("column `{name}` is missing or not {}", T::WHAT),
    };
    match frame.column(name) {
        Ok(column) => T::read(column).ok_or_else(wrong),
        Err(_) => match missing {
            Missing::Required => Err(wrong()),
            Missing::Value(value) => Ok(vec![value; frame.height()]),
            Missing::Column(other) => read(path, frame, other, Missing::Required),
        },
    }
}

/// Declares a stored row: `pub struct Name { pub field: Type [= Missing::...], ... }`, the
/// fields in file order, each a column named like the field; `= ...` says what a file
/// written before the column existed reads as (default: [`Missing::Required`]).
macro_rules! table {
    (@missing) => { $crate::results::schema::Missing::Required };
    (@missing $missing:expr) => { $missing };
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$field_meta:meta])*
                pub $field:ident : $ty:ty $(= $missing:expr)?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl $crate::results::schema::Table for $name {
            fn columns() -> Vec<$crate::results::schema::ColumnSpec> {
                vec![$(
                    $crate::results::schema::ColumnSpec::of::<$ty>(
                        stringify!($field),
                        $crate::results::schema::table!(@missing $($missing)?),
                    ),
                )*]
            }

            fn to_columns(rows: &[Self]) -> Vec<polars::prelude::Column> {
                vec![$(
                    <$ty as $crate::results::schema::Cell>::column(
                        stringify!($field),
                        rows.iter().map(|row| &row.$field),
                    ),
                )*]
            }

            fn from_frame(
                path: &std::path::Path,
                frame: &polars::prelude::DataFrame,
            ) -> $crate::error::Result<Vec<Self>> {
                $(
                    let mut $field = $crate::results::schema::read::<$ty>(
                        path,
                        frame,
                        stringify!($field),
                        $crate::results::schema::table!(@missing $($missing)?),
                    )?
                    .into_iter();
                )*
                Ok((0..frame.height())
                    .map(|_| $name {
                        $( $field: $field.next().expect("a value per row"), )*
                    })
                    .collect())
            }
        }
    };
}
pub(crate) use table;

#[cfg(test)]
mod tests {
    use super::*;

    table! {
        #[derive(Debug, Clone, PartialEq)]
        pub struct Row {
            pub name: String,
            pub note: Option<String>,
            pub count: i64,
            pub value: f64,
            pub added: Option<i64> = Missing::Value(None),
            pub score: f64 = Missing::Column("value"),
        }
    }

    #[test]
    fn the_declaration_drives_the_columns() {
        let columns = Row::columns();
        let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
        assert_eq!(names, ["name", "note", "count", "value", "added", "score"]);
        assert_eq!(columns[1].dtype, DataType::String);
        assert!(columns[1].nullable && !columns[0].nullable);
        assert!(columns[4].defaulted && columns[5].defaulted && !columns[3].defaulted);
        let rows = vec![Row {
            name: "a".into(),
            note: None,
            count: 3,
            value: 0.5,
            added: Some(7),
            score: 0.25,
        }];
        let frame = Row::frame(&rows).unwrap();
        let stored: Vec<(String, DataType)> = frame
            .columns()
            .iter()
            .map(|c| (c.name().to_string(), c.dtype().clone()))
            .collect();
        let declared: Vec<(String, DataType)> = columns
            .iter()
            .map(|c| (c.name.to_string(), c.dtype.clone()))
            .collect();
        assert_eq!(stored, declared);
        assert_eq!(Row::from_frame(Path::new("x"), &frame).unwrap(), rows);
    }

    #[test]
    fn an_older_file_reads_with_the_defaults() {
        let frame = df!(
            "name" => ["a"],
            "note" => [Some("n")],
            "count" => [1i64],
            "value" => [0.5],
        )
        .unwrap();
        let rows = Row::from_frame(Path::new("old.parquet"), &frame).unwrap();
        assert_eq!(rows[0].added, None);
        assert_eq!(rows[0].score, 0.5);
        let err = Row::from_frame(Path::new("odd.parquet"), &df!("x" => [1i64]).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("odd.parquet") && err.contains("`name`"),
            "{err}"
        );
    }
}
