//! Parity of the queue's rules: every case below goes to `imagegen::queue::rules` (what
//! `MemoryQueue` runs) and to `rules.lua` (what the Redis scripts run), the Lua through
//! `EVAL` on the real Redis, and the answers must be the same.

use imagegen::limits::Limit;
use imagegen::queue::redis::RULES_LUA;
use imagegen::queue::rules::{self, AfterDependency, Aimd, LaneState, Window};
use serde_json::{Value, json};

/// Calls `rules[name](args…)` and returns its answers as a JSON array (nil → null).
const HARNESS: &str = r#"
local args = cjson.decode(ARGV[2])
local n = tonumber(ARGV[3])
for i = 1, n do if args[i] == cjson.null then args[i] = nil end end
local function pack(...) return {n = select('#', ...), ...} end
local r = pack(rules[ARGV[1]](unpack(args, 1, n)))
local out = {}
for i = 1, r.n do
  if r[i] == nil then out[i] = cjson.null else out[i] = r[i] end
end
return cjson.encode(out)
"#;

const NOW: u64 = 1_764_000_000_000;

fn lane(v: &Value) -> LaneState {
    LaneState {
        run: v["run"].as_u64().unwrap_or(0),
        eff: v["eff"].as_f64(),
        tat: v["tat"].as_f64().unwrap_or(0.0),
        pause_ms: v["pause"].as_u64().unwrap_or(0),
        park_ms: v["park"].as_u64().unwrap_or(0),
        hold_ms: v["hold"].as_u64().unwrap_or(0),
    }
}

fn window(v: &Value) -> Window {
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    Window {
        start_ms: n("start"),
        throttled: n("throttled"),
        answered: n("answered"),
        prev_throttled: n("prev_throttled"),
        prev_answered: n("prev_answered"),
    }
}

fn opt<T: serde::Serialize>(v: Option<T>) -> Value {
    v.map_or(Value::Null, |v| json!(v))
}

/// The Rust side of a case, in the Lua function's calling convention.
fn rust(name: &str, a: &[Value]) -> Vec<Value> {
    let u = |i: usize| a[i].as_u64().unwrap_or(0);
    let f = |i: usize| a[i].as_f64().unwrap_or(0.0);
    let s = |i: usize| a[i].as_str();
    let limit = |c: usize, r: usize| Limit {
        concurrency: u(c) as u32,
        rpm: u(r) as u32,
    };
    match name {
        "gcra" => {
            let g = rules::gcra(f(0), u(1) as u32, u(2));
            vec![json!(g.allow), json!(g.interval), opt(g.next_ms)]
        }
        "gcra_spend" => vec![json!(rules::gcra_spend(f(0), u(1), u(2), f(3)))],
        "project_allowance" => {
            let r = rules::project_allowance(u(0), limit(1, 2), u(3), f(4), u(5));
            vec![json!(r.allow), opt(r.wake_ms)]
        }
        "lane_allowance" => {
            let r = rules::lane_allowance(u(0), limit(1, 2), &lane(&a[3]), u(4));
            vec![json!(r.allow), opt(r.wake_ms)]
        }
        "held_allowance" => match rules::held_allowance(u(0), u(1), u(2), u(3)) {
            None => vec![Value::Null],
            Some(r) => vec![json!(r.allow), opt(r.wake_ms)],
        },
        "probe_delay" => vec![json!(rules::probe_delay(u(0) as u32, u(1), u(2)))],
        "budget_allowance" => vec![json!(rules::budget_allowance(u(0), u(1), u(2), u(3), u(4)))],
        "next_day_ms" => vec![json!(rules::next_day_ms(u(0)))],
        "at_claim" => {
            let r = rules::at_claim(u(0) as u32, u(1) as u32, u(2), u(3), u(4));
            vec![
                opt(r.as_ref().map(|r| &r.reason)),
                opt(r.map(|r| r.dead_letter)),
            ]
        }
        "at_recover" => {
            let r = rules::at_recover(u(0) as u32, u(1) as u32);
            vec![
                opt(r.as_ref().map(|r| &r.reason)),
                opt(r.map(|r| r.dead_letter)),
            ]
        }
        "at_deferral" => vec![opt(rules::at_deferral(
            a[0].as_bool().unwrap(),
            u(1),
            u(2),
            u(3),
            s(4).unwrap(),
        ))],
        "fenced" => vec![json!(rules::fenced(
            s(0),
            a[1].as_bool().unwrap(),
            s(2).unwrap()
        ))],
        "aimd_increase" => vec![opt(rules::aimd_increase(a[0].as_f64(), u(1) as u32, u(2)))],
        "on_rate_429" => {
            let aimd = Aimd {
                decrease: a[5]["decrease"].as_f64().unwrap(),
                interval_ms: a[5]["interval"].as_u64().unwrap(),
                default_pause_ms: a[5]["default_pause"].as_u64().unwrap(),
            };
            let r = rules::on_rate_429(&lane(&a[0]), u(1), u(2) as u32, u(3), u(4), aimd);
            vec![opt(r.eff), json!(r.pause_ms)]
        }
        "roll_window" => {
            let w = rules::roll_window(window(&a[0]), u(1));
            vec![json!({
                "start": w.start_ms, "throttled": w.throttled, "answered": w.answered,
                "prev_throttled": w.prev_throttled, "prev_answered": w.prev_answered,
            })]
        }
        "hook_target" => vec![opt(rules::hook_target(s(0), s(1)))],
        "batch_complete" => vec![json!(rules::batch_complete(
            a[0].as_u64(),
            u(1),
            a[2].as_bool().unwrap()
        ))],
        "after_dependency" => {
            match rules::after_dependency(
                u(0),
                s(1).unwrap(),
                s(2).unwrap(),
                s(3).unwrap(),
                a[4].as_bool().unwrap(),
            ) {
                AfterDependency::Wait => vec![json!("wait"), Value::Null],
                AfterDependency::Release => vec![json!("release"), Value::Null],
                AfterDependency::Cancel(reason) => vec![json!("cancel"), json!(reason)],
            }
        }
        other => panic!("no rule {other}"),
    }
}

/// (what the case is about, rule, arguments)
fn cases() -> Vec<(&'static str, &'static str, Value)> {
    let aimd = json!({"decrease": 0.85, "interval": 1000, "default_pause": 1000});
    vec![
        // GCRA
        (
            "fresh limit: a burst of half a second",
            "gcra",
            json!([0, 600, NOW]),
        ),
        ("low rate: burst of 1", "gcra", json!([0, 60, NOW])),
        (
            "token spent: next at tat",
            "gcra",
            json!([NOW + 900, 60, NOW]),
        ),
        (
            "partly spent burst",
            "gcra",
            json!([NOW as f64 + 150.0, 1200, NOW]),
        ),
        (
            "tat in the past counts as now",
            "gcra",
            json!([NOW - 60_000, 120, NOW]),
        ),
        (
            "spend from a past tat",
            "gcra_spend",
            json!([NOW - 5, NOW, 3, 100.0]),
        ),
        (
            "spend from a future tat",
            "gcra_spend",
            json!([NOW as f64 + 12.5, NOW, 2, 50.0]),
        ),
        // holds: one probe at a time, when its time has come
        ("not held", "held_allowance", json!([8, 0, 0, NOW])),
        (
            "held, probe not due: wake at the probe",
            "held_allowance",
            json!([8, 0, NOW + 30_000, NOW]),
        ),
        (
            "held, probe due: one job",
            "held_allowance",
            json!([8, 0, NOW, NOW]),
        ),
        (
            "held, probe due but one still running",
            "held_allowance",
            json!([8, 1, NOW - 5, NOW]),
        ),
        (
            "held, probe due, nothing wanted",
            "held_allowance",
            json!([0, 0, NOW - 5, NOW]),
        ),
        (
            "first probe wait",
            "probe_delay",
            json!([0, 30_000, 300_000]),
        ),
        (
            "probe wait doubles",
            "probe_delay",
            json!([2, 30_000, 300_000]),
        ),
        (
            "probe wait capped at five minutes",
            "probe_delay",
            json!([7, 30_000, 300_000]),
        ),
        (
            "probe wait with a base above the cap",
            "probe_delay",
            json!([0, 600_000, 300_000]),
        ),
        (
            "held lane ignores its free concurrency",
            "lane_allowance",
            json!([8, 4, 0, {"run": 0, "tat": 0, "pause": 0, "park": 0, "hold": NOW + 1000}, NOW]),
        ),
        (
            "held lane probes past its pause",
            "lane_allowance",
            json!([8, 4, 0, {"run": 0, "tat": 0, "pause": NOW + 500, "park": 0, "hold": NOW - 1}, NOW]),
        ),
        // daily budgets (nano-USD)
        (
            "no budget",
            "budget_allowance",
            json!([8, 0, 5_000, 3, 100]),
        ),
        (
            "budget room for all",
            "budget_allowance",
            json!([8, 10_000_000, 1_000, 2, 100_000]),
        ),
        (
            "budget room for some",
            "budget_allowance",
            json!([8, 1_000_000, 500_000, 2, 134_000]),
        ),
        (
            "budget spent",
            "budget_allowance",
            json!([8, 1_000_000, 1_000_000, 0, 1]),
        ),
        (
            "budget held by running jobs",
            "budget_allowance",
            json!([8, 1_000_000, 600_000, 3, 134_000]),
        ),
        (
            "budget without an estimate",
            "budget_allowance",
            json!([8, 1_000_000, 10, 3, 0]),
        ),
        ("next reset", "next_day_ms", json!([NOW])),
        (
            "next reset at midnight",
            "next_day_ms",
            json!([1_764_028_800_000u64]),
        ),
        // project admission
        (
            "no project limits",
            "project_allowance",
            json!([8, 0, 0, 0, 0, NOW]),
        ),
        (
            "project concurrency leaves room",
            "project_allowance",
            json!([8, 10, 0, 7, 0, NOW]),
        ),
        (
            "project concurrency reached",
            "project_allowance",
            json!([8, 10, 0, 10, 0, NOW]),
        ),
        (
            "project over its limit (lowered config)",
            "project_allowance",
            json!([8, 4, 0, 6, 0, NOW]),
        ),
        (
            "project rpm limits the claim",
            "project_allowance",
            json!([8, 0, 240, 0, 0, NOW]),
        ),
        (
            "project rpm spent",
            "project_allowance",
            json!([8, 0, 60, 0, NOW + 500, NOW]),
        ),
        (
            "both project limits",
            "project_allowance",
            json!([8, 3, 600, 1, 0, NOW]),
        ),
        // lane admission
        (
            "lane without limits",
            "lane_allowance",
            json!([5, 0, 0, {"run": 0, "tat": 0, "pause": 0, "park": 0}, NOW]),
        ),
        (
            "lane parked: no wake",
            "lane_allowance",
            json!([5, 4, 0, {"run": 0, "tat": 0, "pause": 0, "park": NOW + 1}, NOW]),
        ),
        (
            "lane park just expired",
            "lane_allowance",
            json!([5, 4, 0, {"run": 0, "tat": 0, "pause": 0, "park": NOW}, NOW]),
        ),
        (
            "lane paused: wake at its end",
            "lane_allowance",
            json!([5, 4, 0, {"run": 0, "tat": 0, "pause": NOW + 700, "park": 0}, NOW]),
        ),
        (
            "lane pause expiring now",
            "lane_allowance",
            json!([5, 4, 0, {"run": 0, "tat": 0, "pause": NOW, "park": 0}, NOW]),
        ),
        (
            "lane limit reached",
            "lane_allowance",
            json!([5, 4, 0, {"run": 4, "tat": 0, "pause": 0, "park": 0}, NOW]),
        ),
        (
            "lane AIMD-lowered limit floors",
            "lane_allowance",
            json!([5, 8, 0, {"run": 1, "eff": 3.9, "tat": 0, "pause": 0, "park": 0}, NOW]),
        ),
        (
            "lane AIMD below 1 still admits 1",
            "lane_allowance",
            json!([5, 8, 0, {"run": 0, "eff": 0.4, "tat": 0, "pause": 0, "park": 0}, NOW]),
        ),
        (
            "lane eff above a lowered cap",
            "lane_allowance",
            json!([5, 2, 0, {"run": 0, "eff": 6.0, "tat": 0, "pause": 0, "park": 0}, NOW]),
        ),
        (
            "lane free slots less than its room",
            "lane_allowance",
            json!([2, 8, 0, {"run": 0, "tat": 0, "pause": 0, "park": 0}, NOW]),
        ),
        (
            "lane rate spent",
            "lane_allowance",
            json!([5, 8, 60, {"run": 0, "tat": NOW + 400, "pause": 0, "park": 0}, NOW]),
        ),
        (
            "lane rate and limit",
            "lane_allowance",
            json!([5, 8, 1200, {"run": 5, "tat": 0, "pause": 0, "park": 0}, NOW]),
        ),
        (
            "lane with no free slots",
            "lane_allowance",
            json!([0, 8, 0, {"run": 0, "tat": 0, "pause": 0, "park": 0}, NOW]),
        ),
        // claim outcomes
        (
            "first delivery runs",
            "at_claim",
            json!([1, 3, NOW - 1000, NOW, 86_400_000]),
        ),
        (
            "last delivery still runs",
            "at_claim",
            json!([3, 3, NOW - 1000, NOW, 86_400_000]),
        ),
        (
            "one delivery too many: dead letter",
            "at_claim",
            json!([4, 3, NOW - 1000, NOW, 86_400_000]),
        ),
        (
            "max_wait crossed at claim",
            "at_claim",
            json!([1, 3, NOW - 5_001, NOW, 5_000]),
        ),
        (
            "exactly at max_wait still runs",
            "at_claim",
            json!([1, 3, NOW - 5_000, NOW, 5_000]),
        ),
        ("no deadline", "at_claim", json!([1, 3, 0, NOW, 0])),
        (
            "both: dead letter wins",
            "at_claim",
            json!([9, 3, 0, NOW, 5_000]),
        ),
        // recovery outcomes
        ("recovered: taken over", "at_recover", json!([1, 3])),
        (
            "recovered on its last delivery: dead letter",
            "at_recover",
            json!([3, 3]),
        ),
        ("recovered past the limit", "at_recover", json!([5, 3])),
        // deferrals
        (
            "deferral within max_wait",
            "at_deferral",
            json!([false, NOW - 4_000, NOW, 5_000, "429"]),
        ),
        (
            "deferral crossing max_wait fails",
            "at_deferral",
            json!([false, NOW - 65_432, NOW, 60_000, "429 RESOURCE_EXHAUSTED"]),
        ),
        (
            "counted retry ignores max_wait",
            "at_deferral",
            json!([true, NOW - 65_432, NOW, 60_000, "503"]),
        ),
        (
            "deferral without a deadline",
            "at_deferral",
            json!([false, 0, NOW, 0, "429"]),
        ),
        // fencing
        (
            "settle of the live delivery",
            "fenced",
            json!(["1-0", true, "1-0"]),
        ),
        (
            "settle of a recovered delivery is fenced",
            "fenced",
            json!(["2-0", true, "1-0"]),
        ),
        (
            "settle of a finished job is fenced",
            "fenced",
            json!(["1-0", false, "1-0"]),
        ),
        (
            "settle of a job without a record",
            "fenced",
            json!([null, false, "1-0"]),
        ),
        // AIMD
        (
            "increase after answers",
            "aimd_increase",
            json!([4.0, 10, 2]),
        ),
        (
            "increase stops at the cap",
            "aimd_increase",
            json!([9.9, 10, 5]),
        ),
        (
            "no increase at the cap",
            "aimd_increase",
            json!([10.0, 10, 1]),
        ),
        (
            "no increase when never lowered",
            "aimd_increase",
            json!([null, 10, 3]),
        ),
        (
            "no increase without a cap",
            "aimd_increase",
            json!([3.0, 0, 3]),
        ),
        (
            "first 429 lowers from the cap",
            "on_rate_429",
            json!([{"run": 5, "pause": 0}, 0, 10, 0, NOW, aimd]),
        ),
        (
            "429 within the interval only pauses",
            "on_rate_429",
            json!([{"run": 5, "eff": 8.5, "pause": 0}, NOW - 999, 10, 0, NOW, aimd]),
        ),
        (
            "429 after the interval lowers again",
            "on_rate_429",
            json!([{"run": 5, "eff": 8.5, "pause": 0}, NOW - 1000, 10, 2_500, NOW, aimd]),
        ),
        (
            "429 without a cap lowers from what runs",
            "on_rate_429",
            json!([{"run": 6, "pause": 0}, 0, 0, 0, NOW, aimd]),
        ),
        (
            "429 never lowers below 1",
            "on_rate_429",
            json!([{"run": 1, "eff": 1.0, "pause": 0}, 0, 4, 0, NOW, aimd]),
        ),
        (
            "a shorter advised pause keeps the longer one",
            "on_rate_429",
            json!([{"run": 1, "eff": 3.0, "pause": NOW + 9_000}, 0, 4, 500, NOW, aimd]),
        ),
        // the 429 window
        (
            "window within its minute",
            "roll_window",
            json!([{"start": NOW - 30_000, "throttled": 3, "answered": 9, "prev_throttled": 1, "prev_answered": 2}, NOW]),
        ),
        (
            "window rolls after a minute",
            "roll_window",
            json!([{"start": NOW - 60_000, "throttled": 3, "answered": 9, "prev_throttled": 1, "prev_answered": 2}, NOW]),
        ),
        (
            "window reset after two minutes",
            "roll_window",
            json!([{"start": NOW - 120_000, "throttled": 3, "answered": 9, "prev_throttled": 1, "prev_answered": 2}, NOW]),
        ),
        (
            "fresh window",
            "roll_window",
            json!([{"start": 0, "throttled": 0, "answered": 0, "prev_throttled": 0, "prev_answered": 0}, NOW]),
        ),
        // webhooks
        (
            "own webhook first",
            "hook_target",
            json!(["https://own", "https://default"]),
        ),
        (
            "project default otherwise",
            "hook_target",
            json!([null, "https://default"]),
        ),
        (
            "empty own URL falls back",
            "hook_target",
            json!(["", "https://default"]),
        ),
        ("no webhook at all", "hook_target", json!([null, null])),
        // batch completion
        (
            "sealed and done: completes",
            "batch_complete",
            json!([5, 5, false]),
        ),
        ("not sealed yet", "batch_complete", json!([null, 5, false])),
        ("jobs still running", "batch_complete", json!([5, 4, false])),
        ("completes only once", "batch_complete", json!([5, 5, true])),
        ("empty batch sealed", "batch_complete", json!([0, 0, false])),
        (
            "the last dependency succeeded",
            "after_dependency",
            json!([1, "succeeded", "frame 2", "", false]),
        ),
        (
            "others still pending",
            "after_dependency",
            json!([3, "succeeded", "frame 1", "", false]),
        ),
        (
            "a blocked dependency cancels, naming it and why",
            "after_dependency",
            json!([
                2,
                "blocked",
                "frame 3",
                "IMAGE_SAFETY: the image was blocked",
                false
            ]),
        ),
        (
            "a cancelled dependency without a reason",
            "after_dependency",
            json!([1, "cancelled", "job b.000001", "", false]),
        ),
        (
            "an assembly runs whatever became of its last frame",
            "after_dependency",
            json!([1, "blocked", "frame 6", "IMAGE_SAFETY", true]),
        ),
        (
            "an assembly waits for the other frames",
            "after_dependency",
            json!([2, "failed", "frame 2", "why", true]),
        ),
    ]
}

/// Same value, numbers compared to 1e-12 relative (cjson prints 14 digits).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-9_f64.max(x.abs().max(y.abs()) * 1e-12)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[tokio::test]
async fn rust_rules_and_lua_rules_agree_on_every_case() {
    let client = redis::Client::open(crate::fleet::redis_url(0)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let script = redis::Script::new(&format!("{RULES_LUA}\n{HARNESS}"));
    let cases = cases();
    assert!(cases.len() >= 30, "the table keeps at least 30 cases");
    let mut differ = Vec::new();
    for (what, name, args) in &cases {
        let a = args.as_array().unwrap();
        let lua: String = script
            .arg(*name)
            .arg(args.to_string())
            .arg(a.len())
            .invoke_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{what}: rules.{name} failed in Lua: {e}"));
        let lua: Value = serde_json::from_str(&lua).unwrap();
        let rust = Value::Array(rust(name, a));
        if !same(&lua, &rust) {
            differ.push(format!("{what}: {name}{args}\n  rust {rust}\n  lua  {lua}"));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} cases differ:\n{}",
        differ.len(),
        cases.len(),
        differ.join("\n")
    );
}
