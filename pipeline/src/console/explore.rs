//! The question builder (`/explore`: a dashboard spec from a form, answered as a chart and a
//! table, downloadable as CSV) and saved dashboards (`/dashboards`).
//!
//! A question lives in its URL (`/explore?m=orders.revenue&d=orders.channel&analysis=abc…`), so a
//! link reproduces it; a dashboard is stored through `/v1/dashboards` and its URL is its id.

use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Map, Value, json};

use super::session::Session;
use super::{CheckedForm, ConsoleState, FormPairs, PageResult, Prefs, SignedInSession, urlencode};
use crate::generate::report::{Table, auto_chart, render_svg};

/// Analyses the builder offers.
const ANALYSES: [&str; 4] = ["plain", "compare", "abc", "quadrant"];
/// Filter operators the builder offers.
const OPERATORS: [&str; 10] = [
    "equals",
    "notEquals",
    "in",
    "notIn",
    "contains",
    "gt",
    "gte",
    "lt",
    "lte",
    "between",
];

/// A question's form, as the URL carries it.
struct Question {
    form: FormPairs,
}

impl Question {
    /// The spec the form asks for, in the tenant's zone; `None` until a measure is chosen.
    fn spec(&self, prefs: &Prefs) -> Option<Value> {
        if let Some(raw) = self.form.get("spec") {
            return serde_json::from_str(raw).ok();
        }
        let measures = self.form.all("m");
        if measures.is_empty() {
            return None;
        }
        let mut spec = Map::new();
        spec.insert("measures".into(), json!(measures));
        spec.insert("dimensions".into(), json!(self.form.all("d")));
        if let Some(dimension) = self.form.get("time") {
            let mut time = json!({"dimension": dimension, "timezone": prefs.zone_name()});
            if let Some(grain) = self.form.get("grain") {
                time["grain"] = json!(grain);
            }
            match (self.form.get("from"), self.form.get("to")) {
                (Some(from), Some(to)) => time["range"] = json!([from, to]),
                _ => {
                    if let Some(range) = self.form.get("range") {
                        time["range"] = json!(range);
                    }
                }
            }
            spec.insert("time".into(), time);
        }
        if let (Some(member), Some(op)) = (self.form.get("f_member"), self.form.get("f_op")) {
            let values: Vec<Value> = self
                .form
                .get("f_value")
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| {
                    v.parse::<f64>()
                        .ok()
                        .filter(|_| matches!(op, "gt" | "gte" | "lt" | "lte" | "between"))
                        .map(|n| json!(n))
                        .unwrap_or_else(|| json!(v))
                })
                .collect();
            spec.insert(
                "filters".into(),
                json!([{"member": member, "operator": op, "values": values}]),
            );
        }
        match self.form.get("analysis").unwrap_or("plain") {
            "abc" => {
                spec.insert(
                    "analysis".into(),
                    json!({"type": "abc", "measure": measures[0]}),
                );
            }
            "quadrant" => {
                let split = |key: &str| -> Value {
                    match self.form.get(key) {
                        Some(v) => v.parse::<f64>().map(|n| json!(n)).unwrap_or(json!(v)),
                        None => json!("mean"),
                    }
                };
                let y = measures.get(1).unwrap_or(&measures[0]);
                spec.insert(
                    "analysis".into(),
                    json!({"type": "quadrant", "x": measures[0], "y": y,
                           "xSplit": split("x_split"), "ySplit": split("y_split")}),
                );
            }
            "compare" => {
                spec.insert(
                    "compare".into(),
                    json!(self.form.get("compare").unwrap_or("previousPeriod")),
                );
            }
            _ => {}
        }
        let limit = self
            .form
            .get("limit")
            .and_then(|l| l.parse::<u64>().ok())
            .unwrap_or(100)
            .clamp(1, 10_000);
        spec.insert("limit".into(), json!(limit));
        Some(Value::Object(spec))
    }

    /// The form's values, to fill the builder in again.
    fn values(&self) -> Value {
        let one = |k: &str| json!(self.form.get(k).unwrap_or(""));
        json!({
            "m": self.form.all("m"), "d": self.form.all("d"),
            "time": one("time"), "grain": one("grain"), "range": one("range"),
            "from": one("from"), "to": one("to"),
            "f_member": one("f_member"), "f_op": one("f_op"), "f_value": one("f_value"),
            "analysis": json!(self.form.get("analysis").unwrap_or("plain")),
            "compare": one("compare"), "x_split": one("x_split"), "y_split": one("y_split"),
            "limit": one("limit"),
        })
    }
}

/// A question answered for a page: the chart (SVG), the table as the tenant reads it, or the
/// API's error.
pub(super) async fn answer(
    state: &ConsoleState,
    session: &Session,
    title: &str,
    spec: &Value,
    model: &Value,
) -> Value {
    let api = state
        .api(
            session,
            Method::POST,
            "/v1/query?format=arrow",
            Some(spec.clone()),
        )
        .await;
    let mut panel = json!({"title": title, "spec": spec.to_string()});
    if !api.ok() {
        let (message, field) = api.error();
        panel["error"] = json!(message);
        panel["field"] = json!(field);
        return panel;
    }
    let table = match decode(&api.body) {
        Ok(table) => table,
        Err(e) => {
            panel["error"] = json!(format!("the answer could not be read: {e}"));
            return panel;
        }
    };
    if let Some(chart) = auto_chart(&table) {
        match render_svg(&chart, &table) {
            Ok(svg) => panel["svg"] = json!(svg),
            Err(e) => panel["chart_error"] = json!(e.to_string()),
        }
    }
    let prefs = state.prefs(&session.tenant);
    let formats: Vec<Option<String>> = table
        .columns
        .iter()
        .map(|c| measure_format(model, &c.name))
        .collect();
    let rows: Vec<Vec<Value>> = (0..table.rows.len())
        .map(|r| {
            table
                .columns
                .iter()
                .enumerate()
                .map(|(c, _)| {
                    let value = &table.rows[r][c];
                    let text = match (value.as_f64(), formats[c].as_deref()) {
                        (Some(n), Some("currency")) => prefs.money(n),
                        (Some(n), Some("percent")) => prefs.percent(n),
                        (Some(n), _) => prefs.number(n),
                        _ => table.display(r, c),
                    };
                    json!({"text": text, "number": value.is_number()})
                })
                .collect()
        })
        .collect();
    let columns: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    panel["columns"] = json!(columns);
    panel["rows"] = json!(rows);
    panel["row_count"] = json!(table.rows.len());
    panel
}

/// The display format the model gives the measure a column holds (`currency`, `percent`), also
/// for a comparison column (`<measure>.compare`).
fn measure_format(model: &Value, column: &str) -> Option<String> {
    let name = column.strip_suffix(".compare").unwrap_or(column);
    model["sources"].as_array()?.iter().find_map(|source| {
        source["measures"]
            .as_array()?
            .iter()
            .find(|m| m["name"] == name)
            .and_then(|m| m["format"].as_str().map(str::to_string))
    })
}

/// An Arrow IPC stream as a table.
fn decode(bytes: &[u8]) -> Result<Table, String> {
    let reader = sql::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| e.to_string())?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Table::from_batches(&schema, &batches).map_err(|e| e.to_string())
}

/// The semantic model, as `/v1/model` gives it.
pub(super) async fn model(state: &ConsoleState, session: &Session) -> Value {
    state
        .api(session, Method::GET, "/v1/model", None)
        .await
        .json()
}

pub(super) async fn explore(
    State(state): State<ConsoleState>,
    SignedInSession(session): SignedInSession,
    RawQuery(query): RawQuery,
) -> Response {
    let question = Question {
        form: FormPairs::parse(query.unwrap_or_default().as_bytes()),
    };
    let prefs = state.prefs(&session.tenant);
    let model = model(&state, &session).await;
    let panel = match question.spec(&prefs) {
        Some(spec) => Some(answer(&state, &session, "", &spec, &model).await),
        None => None,
    };
    let dashboards = state
        .api(&session, Method::GET, "/v1/dashboards", None)
        .await
        .json();
    let query_string = query_of(&question.form);
    state.page(
        "explore.html",
        Some(&session),
        json!({
            "section": "explore",
            "model": model,
            "form": question.values(),
            "analyses": ANALYSES,
            "operators": OPERATORS,
            "grains": ["hour", "day", "week", "month", "quarter", "year"],
            "panel": panel,
            "csv_url": format!("/explore.csv?{query_string}"),
            "dashboards": dashboards["dashboards"],
            "zone": prefs.zone_name(),
        }),
    )
}

fn query_of(form: &FormPairs) -> String {
    form.0
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub(super) async fn explore_csv(
    State(state): State<ConsoleState>,
    SignedInSession(session): SignedInSession,
    RawQuery(query): RawQuery,
) -> PageResult {
    let question = Question {
        form: FormPairs::parse(query.unwrap_or_default().as_bytes()),
    };
    let Some(spec) = question.spec(&state.prefs(&session.tenant)) else {
        return Err(state.error(
            Some(&session),
            StatusCode::BAD_REQUEST,
            "choose a measure first",
        ));
    };
    let api = state
        .fetch(&session, Method::POST, "/v1/query?format=csv", Some(spec))
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"tidemark-answer.csv\"".to_string(),
            ),
        ],
        api.body,
    )
        .into_response())
}

pub(super) async fn dashboards(
    State(state): State<ConsoleState>,
    SignedInSession(session): SignedInSession,
) -> Response {
    let list = state
        .api(&session, Method::GET, "/v1/dashboards", None)
        .await
        .json();
    state.page(
        "dashboards.html",
        Some(&session),
        json!({"section": "dashboards", "dashboards": list["dashboards"]}),
    )
}

/// The panel a save form carries: its title and spec (JSON).
fn posted_panel(form: &FormPairs) -> Result<Value, String> {
    let spec: Value = serde_json::from_str(form.get("spec").unwrap_or(""))
        .map_err(|_| "the question to save is missing; build it again".to_string())?;
    Ok(json!({"title": form.get("panel_title").unwrap_or(""), "spec": spec}))
}

pub(super) async fn create_dashboard(
    State(state): State<ConsoleState>,
    CheckedForm { session, form }: CheckedForm,
) -> PageResult {
    let panel = posted_panel(&form)
        .map_err(|message| state.error(Some(&session), StatusCode::BAD_REQUEST, &message))?;
    let body = json!({"title": form.get("title").unwrap_or(""), "panels": [panel]});
    let api = state
        .api(&session, Method::POST, "/v1/dashboards", Some(body))
        .await;
    if !api.ok() {
        let (message, field) = api.error();
        let message = match field {
            Some(field) => format!("{field}: {message}"),
            None => message,
        };
        return Err(state.error(Some(&session), api.status, &message));
    }
    let id = api.json()["id"].as_str().unwrap_or_default().to_string();
    Ok(Redirect::to(&format!("/dashboards/{}", urlencode(&id))).into_response())
}

pub(super) async fn add_panel(
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
    CheckedForm { session, form }: CheckedForm,
) -> PageResult {
    let panel = posted_panel(&form)
        .map_err(|message| state.error(Some(&session), StatusCode::BAD_REQUEST, &message))?;
    let uri = format!("/v1/dashboards/{}", urlencode(&id));
    let current = state.fetch(&session, Method::GET, &uri, None).await?.json();
    let mut panels = current["panels"].as_array().cloned().unwrap_or_default();
    panels.push(panel);
    let body = json!({"title": current["title"], "panels": panels});
    state.fetch(&session, Method::PUT, &uri, Some(body)).await?;
    Ok(Redirect::to(&format!("/dashboards/{}", urlencode(&id))).into_response())
}

pub(super) async fn delete_dashboard(
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
    CheckedForm { session, .. }: CheckedForm,
) -> PageResult {
    let uri = format!("/v1/dashboards/{}", urlencode(&id));
    state.fetch(&session, Method::DELETE, &uri, None).await?;
    Ok(Redirect::to("/dashboards").into_response())
}

pub(super) async fn dashboard(
    State(state): State<ConsoleState>,
    SignedInSession(session): SignedInSession,
    Path(id): Path<String>,
) -> PageResult {
    let uri = format!("/v1/dashboards/{}", urlencode(&id));
    let dashboard = state.fetch(&session, Method::GET, &uri, None).await?.json();
    let model = model(&state, &session).await;
    let panels = dashboard["panels"].as_array().cloned().unwrap_or_default();
    let answers = futures::future::join_all(panels.iter().map(|p| {
        answer(
            &state,
            &session,
            p["title"].as_str().unwrap_or(""),
            &p["spec"],
            &model,
        )
    }))
    .await;
    Ok(state.page(
        "dashboard.html",
        Some(&session),
        json!({
            "section": "dashboards",
            "dashboard": dashboard,
            "panels": answers,
            "explore_links": panels.iter().map(|p| format!("/explore?spec={}", urlencode(&p["spec"].to_string()))).collect::<Vec<_>>(),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(query: &str) -> Question {
        Question {
            form: FormPairs::parse(query.as_bytes()),
        }
    }

    #[test]
    fn an_abc_question_ranks_its_first_measure() {
        let spec = question("m=orders.revenue&d=products.name&analysis=abc&limit=")
            .spec(&Prefs::default())
            .expect("spec");
        assert_eq!(spec["measures"], json!(["orders.revenue"]));
        assert_eq!(spec["dimensions"], json!(["products.name"]));
        assert_eq!(
            spec["analysis"],
            json!({"type": "abc", "measure": "orders.revenue"})
        );
        assert_eq!(spec["limit"], json!(100));
        assert!(spec.get("time").is_none());
    }

    #[test]
    fn time_filters_and_quadrant_thresholds_come_from_the_form() {
        let spec = question(
            "m=orders.revenue&m=orders.orders&time=orders.order_ts&grain=week&range=last+4+weeks\
             &f_member=orders.channel&f_op=in&f_value=naver,+kakao&analysis=quadrant&x_split=median&y_split=5",
        )
        .spec(&Prefs::default())
        .expect("spec");
        assert_eq!(spec["time"]["grain"], json!("week"));
        assert_eq!(spec["time"]["range"], json!("last 4 weeks"));
        assert_eq!(spec["time"]["timezone"], json!("UTC"));
        assert_eq!(spec["filters"][0]["values"], json!(["naver", "kakao"]));
        assert_eq!(spec["analysis"]["xSplit"], json!("median"));
        assert_eq!(spec["analysis"]["ySplit"], json!(5.0));
        assert_eq!(spec["analysis"]["y"], json!("orders.orders"));
    }

    #[test]
    fn no_measure_no_question() {
        assert!(
            question("d=orders.channel")
                .spec(&Prefs::default())
                .is_none()
        );
    }
}
