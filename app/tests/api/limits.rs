//! The service's limits, from the crate's own constants: the OpenAPI document declares
//! them (its validators repeat the numbers as literals), and the tests of the other
//! modules use the constants rather than copies of the numbers.

use todo_api::api::{LIMIT_MAX, SKIP_MAX};
use todo_api::todos::{DESCRIPTION_MAX, TITLE_MAX};

use crate::spawn;

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_declares_the_crates_limits() {
    let app = spawn().await;
    let spec = app.get_json("/openapi.json").await;
    let schemas = &spec["components"]["schemas"];
    for schema in ["TodoCreate", "TodoUpdate"] {
        let properties = &schemas[schema]["properties"];
        assert_eq!(
            properties["title"]["maxLength"], TITLE_MAX,
            "{schema}.title: {properties}"
        );
        assert_eq!(
            properties["description"]["maxLength"], DESCRIPTION_MAX,
            "{schema}.description: {properties}"
        );
    }
    let parameters = spec["paths"]["/api/v1/todos"]["get"]["parameters"]
        .as_array()
        .expect("GET /api/v1/todos has parameters");
    let maximum = |name: &str| {
        parameters
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["schema"]["maximum"].clone())
            .unwrap_or_default()
    };
    assert_eq!(maximum("limit"), LIMIT_MAX as f64, "{parameters:?}");
    assert_eq!(maximum("skip"), SKIP_MAX as f64, "{parameters:?}");
}
