//! The browser viewer's entry point: finds the page's canvas, reads `?run=NAME&view=VIEW&point=I`
//! from the address, and starts the app's UI on the runs of the server that served the page.
//! It keeps the page title equal to [`pretext::ui::PretextApp::status`], so a person sees
//! what loaded in the tab and a browser test can wait for it.
//!
//! Everything is wasm32-only; natively this crate is empty.

#![cfg(target_arch = "wasm32")]

use pretext::ui::source::http::HttpSource;
use pretext::ui::{PretextApp, View};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::wasm_bindgen;

/// The id of the canvas in `index.html`.
const CANVAS_ID: &str = "pretext_canvas";

struct Viewer {
    app: PretextApp,
    title: String,
}

impl eframe::App for Viewer {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.app.show(ui);
        let title = self.app.status();
        if title != self.title {
            if let Some(document) = web_sys::window().and_then(|w| w.document()) {
                document.set_title(&title);
            }
            log::info!("viewer: {title}");
            self.title = title;
        }
    }
}

/// What the page address asks for: `?run=NAME&view=VIEW&point=I` (each optional; `point`
/// selects an embedding point as a click would).
#[derive(Default)]
struct Query {
    run: Option<String>,
    view: Option<View>,
    point: Option<usize>,
}

fn query() -> Query {
    let search = web_sys::window().and_then(|w| w.location().search().ok()).unwrap_or_default();
    let Ok(params) = web_sys::UrlSearchParams::new_with_str(&search) else { return Query::default() };
    let view =
        params.get("view").and_then(|v| View::ALL.iter().copied().find(|view| view.title().eq_ignore_ascii_case(&v)));
    Query { run: params.get("run"), view, point: params.get("point").and_then(|p| p.parse().ok()) }
}

fn canvas() -> Result<web_sys::HtmlCanvasElement, String> {
    let document = web_sys::window().and_then(|w| w.document()).ok_or("the page has no document")?;
    let element = document.get_element_by_id(CANVAS_ID).ok_or_else(|| format!("the page has no #{CANVAS_ID}"))?;
    element.dyn_into::<web_sys::HtmlCanvasElement>().map_err(|_| format!("#{CANVAS_ID} is not a canvas"))
}

/// Runs when the module is instantiated (`wasm-bindgen`'s start function).
#[wasm_bindgen(start)]
pub fn start() {
    // Another logger already set is harmless: messages still reach the console.
    let _ = eframe::WebLogger::init(log::LevelFilter::Info);
    wasm_bindgen_futures::spawn_local(async {
        let canvas = match canvas() {
            Ok(canvas) => canvas,
            Err(e) => {
                log::error!("cannot start the viewer: {e}");
                return;
            }
        };
        let query = query();
        let creator: eframe::AppCreator<'static> = Box::new(move |_cc| {
            let mut app = PretextApp::new(Box::new(HttpSource::new("")));
            if let Some(run) = &query.run {
                app.select_run(run);
            }
            if let Some(view) = query.view {
                app.set_view(view);
            }
            if let Some(point) = query.point {
                app.select_embedding_point(point);
            }
            Ok(Box::new(Viewer { app, title: String::new() }))
        });
        let started = eframe::WebRunner::new().start(canvas, eframe::WebOptions::default(), creator).await;
        if let Err(e) = started {
            log::error!("cannot start the viewer: {e:?}");
        }
    });
}
