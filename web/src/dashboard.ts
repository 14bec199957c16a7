// The fleet dashboard (`/`). It reads the index's `stats` and `routes` queries through an
// anonymous agent, like any client, every second; on the demo it also reads the observer
// (`/flotilla/observer`) for request counters and a live log of recent requests. The index
// shows a non-admin (the anonymous agent) every figure and count, but no SubDB names: `routes`
// lists only the caller's own SubDBs and `stats` leaves out the moves' outer keys, so the
// partitions show their counts, and names only for SubDBs the anonymous principal owns (none).

import uPlot from "uplot";
import { AnonymousIdentity } from "@icp-sdk/core/agent";
import { createAgent, Flotilla, type IndexStats, type InnerKey } from "./client/index.ts";
import { byId, formatBytes, formatCount, formatCycles, h, hostSetup, loadConfig, type PageConfig, setText, shortPrincipal } from "./common.ts";

/** How often the page reads the fleet, in milliseconds. */
const POLL_MS = 1_000;
/** Points kept per chart (10 minutes at one a second). */
const CHART_POINTS = 600;
/** Rows kept in the request log. */
const LOG_ROWS = 100;
/** Routes read per tick to name each partition's SubDBs (the counts come from `stats`). */
const ROUTES_SHOWN = 2_000;

/** `GET /flotilla/observer` (the demo only). */
interface Observer {
  round: number;
  round_ms: number;
  ops_completed: number;
  requests_total: number;
  partition_reads: number;
  partition_writes: number;
  calls_by_partition_reads: number;
  calls_by_partition_writes: number;
  moves_completed: number;
  /** Invariant violations the simulator's checkers found (0 expected). */
  violations?: number;
  requests: ObservedRequest[];
}

interface ObservedRequest {
  seq: number;
  round: number;
  from: string;
  canister: string;
  role: "index" | "partition" | string;
  method: string;
  kind: "query" | "update" | string;
  outcome: string;
  calls: number;
}

type PartitionState = IndexStats["partitions"][number]["state"];

function stateName(s: PartitionState): string {
  return Object.keys(s)[0] ?? "Unknown";
}

// ---- charts -------------------------------------------------------------------------------

interface Series {
  xs: number[];
  bytes: (number | null)[];
  partitions: (number | null)[];
  requestsPerSec: (number | null)[];
  opsPerSec: (number | null)[];
}

const series: Series = { xs: [], bytes: [], partitions: [], requestsPerSec: [], opsPerSec: [] };

function trim(): void {
  const extra = series.xs.length - CHART_POINTS;
  if (extra > 0) for (const a of Object.values(series)) a.splice(0, extra);
}

const AXIS = { stroke: "#5b6675", grid: { stroke: "#e6e9ef", width: 1 }, ticks: { stroke: "#e6e9ef", width: 1 } };

function makeChart(
  mount: HTMLElement,
  title: string,
  lines: { label: string; stroke: string; fill?: string }[],
  yFormat: (v: number) => string,
): uPlot {
  const opts: uPlot.Options = {
    title,
    width: Math.max(260, mount.clientWidth),
    height: 180,
    cursor: { drag: { x: false, y: false } },
    legend: { show: true },
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.15 : 1] } },
    axes: [
      { ...AXIS },
      { ...AXIS, size: 64, values: (_u, vals) => vals.map((v) => (v === null ? "" : yFormat(v))) },
    ],
    series: [
      {},
      ...lines.map((l) => ({
        label: l.label,
        stroke: l.stroke,
        fill: l.fill,
        width: 2,
        spanGaps: true,
        points: { show: false },
        value: (_u: uPlot, v: number | null) => (v === null ? "—" : yFormat(v)),
      })),
    ],
  };
  return new uPlot(opts, [[], ...lines.map(() => [])], mount);
}

// ---- the page -----------------------------------------------------------------------------

class Dashboard {
  private readonly client: Flotilla;
  private afterSeq = 0;
  private observerOk: boolean;
  private lastObs: { t: number; requests: number; ops: number } | null = null;
  private readonly charts: uPlot[] = [];
  private readonly partitionRows = new Map<string, HTMLElement>();

  constructor(client: Flotilla, config: PageConfig) {
    this.client = client;
    this.observerOk = config.demo;
    const bytesChart = makeChart(byId("chart-bytes"), "Bytes stored", [{ label: "total", stroke: "#2f6fde", fill: "rgba(47,111,222,0.10)" }], (v) =>
      formatBytes(Math.round(v)),
    );
    const partChart = makeChart(byId("chart-partitions"), "Partitions", [{ label: "partitions", stroke: "#0f9d76" }], (v) => String(Math.round(v)));
    const opsChart = makeChart(
      byId("chart-ops"),
      "Operations per second",
      [
        { label: "requests/s", stroke: "#d9480f" },
        { label: "user ops/s", stroke: "#7048e8" },
      ],
      (v) => v.toFixed(v < 10 ? 1 : 0),
    );
    this.charts.push(bytesChart, partChart, opsChart);
    window.addEventListener("resize", () => {
      for (const c of this.charts) {
        const w = (c.root.parentElement as HTMLElement).clientWidth;
        c.setSize({ width: Math.max(260, w), height: 180 });
      }
    });
    if (!config.demo) {
      byId("observer-note").hidden = false;
    }
  }

  async tick(): Promise<void> {
    const [stats, routes, obs] = await Promise.all([
      this.client.stats(),
      this.client.routesPage(undefined, ROUTES_SHOWN),
      this.observerOk ? this.observe() : Promise.resolve(null),
    ]);
    const now = Date.now() / 1000;
    this.renderSummary(stats, routes.version, obs);
    this.renderPartitions(
      stats,
      routes.routes.map((r) => ({ outerKey: r.outer_key, inner: r.inner })),
    );
    this.renderMoves(stats);
    let rates: { requests: number | null; ops: number | null } = { requests: null, ops: null };
    if (obs) {
      rates = this.rates(obs);
      this.renderObserver(obs, rates);
    }
    const total = stats.partitions.reduce((s, p) => s + Number(p.bytes), 0);
    series.xs.push(now);
    series.bytes.push(total);
    series.partitions.push(stats.partitions.length);
    series.requestsPerSec.push(rates.requests);
    series.opsPerSec.push(rates.ops);
    trim();
    this.charts[0]!.setData([series.xs, series.bytes]);
    this.charts[1]!.setData([series.xs, series.partitions]);
    this.charts[2]!.setData([series.xs, series.requestsPerSec, series.opsPerSec]);
  }

  private async observe(): Promise<Observer | null> {
    try {
      const r = await fetch(`/flotilla/observer?after=${this.afterSeq}`, { cache: "no-store" });
      if (r.status === 404) {
        this.observerOk = false;
        byId("observer-note").hidden = false;
        return null;
      }
      if (!r.ok) return null;
      return (await r.json()) as Observer;
    } catch {
      return null;
    }
  }

  private rates(o: Observer): { requests: number | null; ops: number | null } {
    const t = performance.now() / 1000;
    const prev = this.lastObs;
    this.lastObs = { t, requests: o.requests_total, ops: o.ops_completed };
    if (!prev || t - prev.t <= 0) return { requests: null, ops: null };
    const dt = t - prev.t;
    return {
      requests: Math.max(0, (o.requests_total - prev.requests) / dt),
      ops: Math.max(0, (o.ops_completed - prev.ops) / dt),
    };
  }

  private renderSummary(s: IndexStats, routesVersion: bigint, obs: Observer | null): void {
    setText(byId("partition-count"), String(s.partitions.length));
    setText(byId("partitions-being-created"), String(s.partitions_being_created));
    setText(byId("spare-pool-target"), String(s.spare_pool_target));
    const spares = s.partitions.filter((p) => stateName(p.state) === "Spare").length;
    setText(byId("spare-count"), String(spares));
    setText(byId("subdb-count"), formatCount(s.subdbs));
    setText(byId("routing-version"), String(s.routing_version));
    byId("routing-version").title = `routes snapshot version ${routesVersion}`;
    // `moves` (outer keys) is listed to admins only; the count is public.
    setText(byId("moves-in-progress-count"), String(s.moves_total));
    setText(byId("move-cap"), formatBytes(s.move_cap_bytes));
    setText(byId("index-cycles"), formatCycles(s.cycles.balance));
    setText(byId("cycles-reserve"), formatCycles(s.cycles.reserve));
    setText(byId("top-ups"), formatCount(s.cycles.top_ups));
    byId("cycles-low").hidden = !s.cycles.low;
    if (!obs) setText(byId("moves-completed"), "—");
  }

  private renderPartitions(s: IndexStats, routes: { outerKey: string; inner: InnerKey }[]): void {
    const cap = Number(s.move_cap_bytes) || 1;
    const names = new Map<string, string[]>();
    for (const r of routes) {
      const id = r.inner.partition.toText();
      let list = names.get(id);
      if (!list) names.set(id, (list = []));
      list.push(r.outerKey);
    }
    const container = byId("partitions");
    const seen = new Set<string>();
    s.partitions.forEach((p, i) => {
      const id = p.id.toText();
      seen.add(id);
      let row = this.partitionRows.get(id);
      if (!row) {
        row = h(
          "div",
          { class: "partition", "data-testid": "partition", "data-partition": id },
          h(
            "div",
            { class: "p-head" },
            h("span", { class: "p-label" }),
            h("span", { class: "p-id mono", title: id }, shortPrincipal(id)),
            h("span", { class: "badge", "data-testid": "partition-state" }),
          ),
          h("div", { class: "bar", title: "filling towards the move cap" }, h("div", { class: "fill" })),
          h(
            "div",
            { class: "p-figures" },
            h("span", { "data-testid": "partition-bytes" }),
            " · ",
            h("span", { "data-testid": "partition-percent" }),
            " of cap · ",
            h("span", { "data-testid": "partition-subdbs" }),
            " SubDBs · ",
            h("span", { "data-testid": "partition-items" }),
            " items",
          ),
          h("div", { class: "p-names mono" }),
        );
        this.partitionRows.set(id, row);
      }
      if (container.children[i] !== row) container.insertBefore(row, container.children[i] ?? null);
      const state = stateName(p.state);
      row.dataset.state = state;
      row.className = `partition state-${state.toLowerCase()}`;
      const pct = (Number(p.bytes) / cap) * 100;
      setText(row.querySelector(".p-label")!, `P${i + 1}`);
      // Health (opt: none from an index built before it): unreachable partitions take no
      // new SubDBs or moves until they answer again.
      const health = p.health[0];
      const unreachable = health !== undefined && health.unreachable_since.length > 0;
      const badge = row.querySelector('[data-testid="partition-state"]') as HTMLElement;
      setText(badge, unreachable ? `${state} · unreachable` : state);
      badge.title = health
        ? `failed calls in a row: ${health.failed_calls}, failed imports in a row: ${health.failed_imports}`
        : "";
      row.classList.toggle("unreachable", unreachable);
      (row.querySelector(".fill") as HTMLElement).style.width = `${Math.min(100, pct).toFixed(2)}%`;
      row.classList.toggle("over", pct > 100);
      setText(row.querySelector('[data-testid="partition-bytes"]')!, formatBytes(p.bytes));
      setText(row.querySelector('[data-testid="partition-percent"]')!, `${pct.toFixed(pct < 10 ? 1 : 0)}%`);
      setText(row.querySelector('[data-testid="partition-subdbs"]')!, formatCount(p.subdbs));
      setText(row.querySelector('[data-testid="partition-items"]')!, formatCount(p.items));
      const list = (names.get(id) ?? []).sort();
      const shown = list.slice(0, 6).join("  ");
      setText(row.querySelector(".p-names")!, list.length > 6 ? `${shown}  +${list.length - 6} more` : shown);
    });
    for (const [id, row] of this.partitionRows) {
      if (!seen.has(id)) {
        row.remove();
        this.partitionRows.delete(id);
      }
    }
    byId("partitions-empty").hidden = s.partitions.length > 0;
  }

  private renderMoves(s: IndexStats): void {
    const body = byId("moves-body");
    body.replaceChildren(
      ...s.moves.map((m) =>
        h(
          "tr",
          { "data-testid": "move", "data-outer-key": m.outer_key },
          h("td", { class: "mono" }, m.outer_key),
          h(
            "td",
            { class: "mono" },
            h("span", { title: m.source.partition.toText() }, shortPrincipal(m.source.partition)),
            ` #${m.source.subdb} → `,
            h("span", { title: m.target.toText() }, shortPrincipal(m.target)),
          ),
          h("td", {}, h("span", { class: "phase" }, m.phase)),
          h("td", { class: "num" }, formatCount(m.chunks)),
          h("td", { class: "num" }, formatBytes(m.bytes)),
          h("td", { class: "num" }, String(m.failures)),
        ),
      ),
    );
    const empty = byId("moves-empty");
    empty.hidden = s.moves.length > 0;
    setText(
      empty,
      s.moves_total > 0n && !s.caller_is_admin
        ? `${s.moves_total} in progress; the index names them to its admins only.`
        : "No move in progress.",
    );
  }

  private renderObserver(o: Observer, rates: { requests: number | null; ops: number | null }): void {
    setText(byId("moves-completed"), formatCount(o.moves_completed));
    setText(byId("round"), formatCount(o.round));
    if (o.violations !== undefined) {
      setText(byId("violations"), formatCount(o.violations));
      byId("violations-line").hidden = false;
      byId("violations-line").classList.toggle("bad", o.violations > 0);
    }
    setText(byId("requests-total"), formatCount(o.requests_total));
    setText(byId("ops-per-second"), rates.requests === null ? "—" : rates.requests.toFixed(1));
    const perRead = o.partition_reads > 0 ? o.calls_by_partition_reads / o.partition_reads : 0;
    const perWrite = o.partition_writes > 0 ? o.calls_by_partition_writes / o.partition_writes : 0;
    setText(byId("calls-per-read"), Number.isInteger(perRead) ? String(perRead) : perRead.toFixed(3));
    setText(byId("calls-per-write"), Number.isInteger(perWrite) ? String(perWrite) : perWrite.toFixed(3));
    setText(
      byId("calls-detail"),
      `${formatCount(o.calls_by_partition_reads)} calls / ${formatCount(o.partition_reads)} reads · ${formatCount(o.calls_by_partition_writes)} calls / ${formatCount(o.partition_writes)} writes`,
    );
    if (o.requests.length === 0) return;
    const at = new Date().toLocaleTimeString("en-GB", { hour12: false });
    const body = byId("request-log-body");
    const rows = o.requests.map((r) => {
      const outcomeClass = r.outcome === "Ok" ? "ok" : r.outcome.startsWith("Err") ? "err" : "reject";
      return h(
        "tr",
        { "data-testid": "request", "data-seq": r.seq, "data-method": r.method, "data-role": r.role },
        h("td", { class: "mono dim" }, at),
        h("td", { class: "num" }, formatCount(r.round)),
        h("td", { class: "mono", title: r.from }, r.from.includes("-") ? shortPrincipal(r.from) : r.from),
        h("td", { class: "mono" }, r.method, h("span", { class: `kind kind-${r.kind}` }, r.kind)),
        h("td", { class: "mono", title: r.canister }, r.role === "index" ? "index" : shortPrincipal(r.canister)),
        h("td", { class: `outcome ${outcomeClass}`, title: r.outcome }, r.outcome),
        h("td", { class: "num", "data-testid": "request-calls" }, String(r.calls)),
      );
    });
    // Newest first.
    body.prepend(...rows.reverse());
    while (body.children.length > LOG_ROWS) body.lastElementChild!.remove();
    this.afterSeq = Math.max(this.afterSeq, ...o.requests.map((r) => r.seq));
    byId("request-log-empty").hidden = true;
  }
}

async function main(): Promise<void> {
  const status = byId("status");
  let config: PageConfig;
  try {
    config = await loadConfig();
    const { agent } = await createAgent({ ...hostSetup(), identity: new AnonymousIdentity() });
    const client = new Flotilla({ agent, indexId: config.index, policy: { maxAttempts: 3 } });
    setText(byId("index-id"), config.index);
    const dash = new Dashboard(client, config);
    const loop = async () => {
      try {
        await dash.tick();
        status.className = "status live";
        setText(status, config.demo ? "live · demo" : "live");
      } catch (e) {
        status.className = "status down";
        setText(status, "reconnecting…");
        status.title = e instanceof Error ? e.message : String(e);
      }
      setTimeout(loop, POLL_MS);
    };
    await loop();
  } catch (e) {
    status.className = "status down";
    setText(status, `cannot connect: ${e instanceof Error ? e.message : String(e)}`);
  }
}

void main();
