//! (in progress)

use axum::Router;

use crate::ApiState;

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
}
