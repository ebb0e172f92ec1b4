//! The query handlers: every statement runs as the connection's [`Principal`] through the
//! platform's SQL use case, unless it is a session statement answered locally
//! ([`crate::session`]). The simple protocol runs each statement of a query string in turn and
//! stops at the first error, as PostgreSQL does; the extended protocol plans a statement at
//! `Parse` (its parameter types and columns, for `Describe`) and runs it with the bound values at
//! `Execute`. A cancel request or the engine's time limit ends a running statement (57014).

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::sink::Sink;
use futures::stream;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use thinglake_platform::{Platform, Principal};
use thinglake_queries::arrow::datatypes::Schema;
use thinglake_queries::{ScalarValue, SqlDescription};

use crate::error::{from_platform, sqlstate, user_error};
use crate::activity::Activity;
use crate::session::{Local, local, split};
use crate::types::{data_rows, fields, parameters, pg_type};

/// A statement prepared with `Parse`.
#[derive(Debug, Clone)]
pub struct Prepared {
    text: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Local(Local),
    Query(SqlDescription),
}

/// Both query protocols, over one platform.
pub struct Queries {
    platform: Platform,
    parser: Arc<Parser>,
    /// When each connection last started a statement (for the idle timeout).
    activity: Arc<Activity>,
}

impl Queries {
    pub fn new(platform: Platform, activity: Arc<Activity>) -> Self {
        Self { parser: Arc::new(Parser { platform: platform.clone() }), platform, activity }
    }

    /// Runs one statement and answers its rows (columns in `format`).
    async fn run(&self, p: &Principal, text: &str, params: Vec<ScalarValue>, format: Option<&Format>) -> PgWireResult<Response> {
        let answer = self.platform.sql_batches(p, text, params).await.map_err(from_platform)?;
        let fields = Arc::new(fields(&answer.schema, format));
        // Encoding is CPU work proportional to the rows: off the I/O runtime.
        let encoded = {
            let fields = fields.clone();
            tokio::task::spawn_blocking(move || data_rows(&answer, &fields))
                .await
                .map_err(|e| user_error(sqlstate::INTERNAL_ERROR, format!("encoding rows: {e}")))??
        };
        Ok(Response::Query(QueryResponse::new(fields, stream::iter(encoded.into_iter().map(Ok)))))
    }
}

/// The signed-in user of a connection, checked again for every statement: a user deleted,
/// signed out or whose password changed since the connection signed in is refused (28000).
fn principal<C: ClientInfo>(platform: &Platform, client: &C) -> PgWireResult<Arc<Principal>> {
    let p = client
        .session_extensions()
        .get::<Principal>()
        .ok_or_else(|| user_error(sqlstate::INVALID_AUTHORIZATION, "the connection is not signed in"))?;
    platform.check_session(&p).map_err(|e| user_error(sqlstate::INVALID_AUTHORIZATION, format!("session ended: {e}")))?;
    Ok(p)
}

/// The one-column description of a local value.
fn value_fields(column: &str, format: Option<&Format>) -> Vec<FieldInfo> {
    let format = format.map_or(FieldFormat::Text, |f| f.format_for(0));
    vec![FieldInfo::new(column.to_string(), None, None, Type::TEXT, format)]
}

fn local_response(answer: &Local, format: Option<&Format>) -> PgWireResult<Response> {
    match answer {
        Local::Command(tag) => Ok(Response::Execution(Tag::new(tag))),
        Local::Value { column, value } => {
            let fields = Arc::new(value_fields(column, format));
            let mut encoder = DataRowEncoder::new(fields.clone());
            encoder.encode_field(&value.as_str())?;
            Ok(Response::Query(QueryResponse::new(fields, stream::iter([Ok(encoder.take_row())]))))
        }
    }
}

/// An error as a response of the simple protocol (the statements after it are not run).
fn error_response(e: PgWireError) -> Response {
    Response::Error(Box::new(ErrorInfo::from(e)))
}

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.activity.touch(client.socket_addr());
        let p = principal(&self.platform, client)?;
        let mut responses = Vec::new();
        for statement in split(query) {
            let answered = match local(&statement, &p.email) {
                Ok(Some(answer)) => local_response(&answer, None),
                Ok(None) => self.run(&p, &statement, Vec::new(), None).await,
                Err(e) => Err(e),
            };
            match answered {
                Ok(response) => responses.push(response),
                Err(e) => {
                    responses.push(error_response(e));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Queries {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Self::Statement>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.activity.touch(client.socket_addr());
        let p = principal(&self.platform, client)?;
        let statement = &portal.statement;
        match &statement.statement.kind {
            Kind::Local(answer) => local_response(answer, Some(&portal.result_column_format)),
            Kind::Query(description) => {
                let params = parameters(portal, &statement.parameter_types, &description.parameters)?;
                self.run(&p, &statement.statement.text, params, Some(&portal.result_column_format)).await
            }
        }
    }
}

/// Plans statements at `Parse`, so `Describe` can answer before anything runs.
pub struct Parser {
    platform: Platform,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(&self, client: &C, sql: &str, _types: &[Option<Type>]) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let p = principal(&self.platform, client)?;
        let kind = match local(sql, &p.email)? {
            Some(answer) => Kind::Local(answer),
            None => Kind::Query(self.platform.sql_describe(&p, sql).await.map_err(from_platform)?),
        };
        Ok(Some(Prepared { text: sql.to_string(), kind }))
    }

    fn get_parameter_types(&self, statement: &Self::Statement) -> PgWireResult<Vec<Type>> {
        Ok(match &statement.kind {
            Kind::Local(_) => Vec::new(),
            Kind::Query(description) => {
                // A placeholder whose type the plan does not tell (`LIMIT $1`) is text to the client.
                description.parameters.iter().map(|t| t.as_ref().map_or(Type::TEXT, pg_type)).collect()
            }
        })
    }

    fn get_result_schema(&self, statement: &Self::Statement, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        Ok(match &statement.kind {
            Kind::Local(Local::Command(_)) => Vec::new(),
            Kind::Local(Local::Value { column, .. }) => value_fields(column, format),
            Kind::Query(description) => fields(description.schema.as_ref() as &Schema, format),
        })
    }
}
