//! The task's own settings as a form built from the plugin's defaults: a field per setting
//! by its JSON type (numbers, booleans, pairs and lists of numbers, strings), with the raw
//! JSON behind an "Advanced" toggle for anything else.
//!
//! Plugins declare `f32` settings, which reach the host widened to `f64`
//! (`0.20000000298023224`); the form shows and sends such values as the `f32` they are
//! (`0.2`). This file must not know any plugin's settings by name.

use serde_json::{Map, Number, Value};

/// The settings being edited.
#[derive(Clone, Debug, Default)]
pub struct TaskSettings {
    pub values: Map<String, Value>,
    /// The raw JSON while "Advanced" is on.
    pub json: String,
    pub advanced: bool,
    error: Option<String>,
}

/// `v` as the shortest decimal that reads back as the same `f32`, when it came from one.
fn tidy_number(v: f64) -> f64 {
    #[allow(clippy::cast_possible_truncation)]
    let narrow = v as f32;
    if f64::from(narrow) == v { format!("{narrow}").parse().unwrap_or(v) } else { v }
}

/// `value` with every float tidied (see the module docs).
pub fn tidy(value: Value) -> Value {
    match value {
        Value::Number(n) if n.is_f64() => {
            n.as_f64().and_then(|f| Number::from_f64(tidy_number(f))).map_or(Value::Number(n), Value::Number)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(tidy).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, tidy(v))).collect()),
        other => other,
    }
}

impl TaskSettings {
    pub fn from_defaults(defaults: &Value) -> Self {
        let values = match tidy(defaults.clone()) {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        Self { values, ..Self::default() }
    }

    /// The settings to train with.
    pub fn value(&self) -> Result<Value, String> {
        if self.advanced {
            serde_json::from_str(&self.json).map_err(|e| format!("the task settings are not valid JSON: {e}"))
        } else {
            Ok(Value::Object(self.values.clone()))
        }
    }

    pub fn show(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.strong("Task settings");
            let mut advanced = self.advanced;
            if ui.checkbox(&mut advanced, "Advanced (JSON)").changed() {
                self.toggle(advanced);
            }
        });
        if let Some(e) = &self.error {
            super::super::error_label(ui, e);
        }
        if self.advanced {
            ui.add(
                egui::TextEdit::multiline(&mut self.json).code_editor().desired_rows(6).desired_width(f32::INFINITY),
            );
            return;
        }
        if self.values.is_empty() {
            ui.weak("This task has no settings of its own.");
            return;
        }
        egui::Grid::new("task-settings").num_columns(2).spacing([12.0, 6.0]).show(ui, |ui| {
            for (key, value) in &mut self.values {
                let label = ui.label(key.as_str());
                // Named by its label, for screen readers (and UI tests).
                field(ui, key, value).labelled_by(label.id);
                ui.end_row();
            }
        });
    }

    fn toggle(&mut self, advanced: bool) {
        if advanced {
            self.json = serde_json::to_string_pretty(&Value::Object(self.values.clone())).unwrap_or_default();
            self.advanced = true;
            self.error = None;
            return;
        }
        match serde_json::from_str::<Value>(&self.json) {
            Ok(Value::Object(map)) => {
                self.values = map;
                self.advanced = false;
                self.error = None;
            }
            Ok(_) => self.error = Some("the task settings must be a JSON object".into()),
            Err(e) => self.error = Some(format!("the task settings are not valid JSON: {e}")),
        }
    }
}

/// One setting's widget, by its JSON type.
fn field(ui: &mut egui::Ui, key: &str, value: &mut Value) -> egui::Response {
    match value {
        Value::Bool(b) => ui.checkbox(b, ""),
        Value::Number(_) => number(ui, value),
        Value::String(s) => ui.add(egui::TextEdit::singleline(s).desired_width(140.0)),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_number) => {
            ui.horizontal(|ui| {
                for item in items.iter_mut() {
                    number(ui, item);
                }
            })
            .response
        }
        other => ui.weak(other.to_string()).on_hover_text(format!("edit `{key}` under Advanced (JSON)")),
    }
}

fn number(ui: &mut egui::Ui, value: &mut Value) -> egui::Response {
    if let Some(i) = value.as_i64() {
        let mut v = i;
        let r = ui.add(egui::DragValue::new(&mut v));
        if r.changed() {
            *value = Value::from(v);
        }
        r
    } else {
        let f = value.as_f64().unwrap_or(0.0);
        let mut v = f;
        let speed = (f.abs() * 0.01).max(1e-4);
        // Shown as typed (`0.2`, not `0.200`), to six decimals at most.
        let r = ui.add(
            egui::DragValue::new(&mut v).speed(speed).custom_formatter(|v, _| format!("{}", (v * 1e6).round() / 1e6)),
        );
        if r.changed()
            && let Some(n) = Number::from_f64(v)
        {
            *value = Value::Number(n);
        }
        r
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn floats_from_f32_show_as_typed() {
        let defaults = serde_json::json!({
            "temperature": f64::from(0.2f32),
            "crop_scale": [f64::from(0.08f32), 1.0],
            "exact": 0.1,
            "hidden_dim": 512,
            "blur": true,
            "name": "x",
        });
        let s = TaskSettings::from_defaults(&defaults);
        assert_eq!(s.values["temperature"], serde_json::json!(0.2));
        assert_eq!(s.values["crop_scale"], serde_json::json!([0.08, 1.0]));
        assert_eq!(s.values["exact"], serde_json::json!(0.1));
        assert_eq!(s.values["hidden_dim"], serde_json::json!(512));
        assert_eq!(s.value().unwrap()["name"], "x");
    }

    #[test]
    fn advanced_round_trips_and_refuses_bad_json() {
        let mut s = TaskSettings::from_defaults(&serde_json::json!({"a": 1}));
        s.toggle(true);
        assert!(s.json.contains("\"a\": 1"));
        s.json = "{\"a\": 2, \"b\": [1, 2]}".into();
        assert_eq!(s.value().unwrap()["a"], 2);
        s.toggle(false);
        assert!(!s.advanced);
        assert_eq!(s.values["b"], serde_json::json!([1, 2]));
        s.toggle(true);
        s.json = "{oops".into();
        assert!(s.value().is_err());
        s.toggle(false);
        assert!(s.advanced && s.error.is_some(), "bad JSON keeps the editor open with an error");
    }
}
