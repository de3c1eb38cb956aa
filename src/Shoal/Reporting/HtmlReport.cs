using System.Globalization;
using System.Net;
using System.Text;
using Shoal.Journal;
using Shoal.Tasks;

namespace Shoal.Reporting;

/// <summary>
/// Renders a <see cref="ReportModel"/> as one self-contained HTML file: inline CSS and SVG, a few lines of inline
/// script, nothing fetched (clusters have no internet). Idle slot time is the pale red background of each timeline
/// row, so gaps stand out against the blue of running tasks.
/// </summary>
public static class HtmlReport
{
    private const int LabelWidth = 170;
    private const int PlotWidth = 1000;

    public static string Render(ReportModel model, string runDir, string origin, IReadOnlyList<RunJournal.SessionRow> sessions, IReadOnlyList<RunJournal.WorkerRow> workers, IReadOnlyDictionary<int, string> stderrTails, DateTimeOffset generated, IReadOnlyDictionary<int, string>? sessionJobs = null, IReadOnlyList<RunJournal.ReleaseRow>? releases = null, IReadOnlyList<RunJournal.NodeStepRow>? nodeSteps = null, IReadOnlyList<(int Session, int Line, long At, int Failed, bool Stopped)>? barriers = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sessions);
        ArgumentNullException.ThrowIfNull(workers);
        ArgumentNullException.ThrowIfNull(stderrTails);
        var h = new StringBuilder(64 * 1024);
        var span = TimeSpan.FromMilliseconds(model.EndMs - model.StartMs);
        var meanUse = model.Utilisation.Length == 0 ? 0 : model.Utilisation.Average();
        h.Append("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">")
         .Append("<title>Shoal report: ").Append(E(origin)).Append("</title><style>").Append(Css).Append("</style></head><body>\n");
        h.Append("<h1>Shoal run report</h1><p class=\"sub\">").Append(E(origin)).Append(" &middot; ").Append(E(runDir))
         .Append(" &middot; generated ").Append(E(generated.ToString("yyyy-MM-dd HH:mm:ss 'UTC'", CultureInfo.InvariantCulture))).Append("</p>\n");

        h.Append("<section id=\"summary\" class=\"cards\">");
        Card(h, "tasks", model.Total.ToString(CultureInfo.InvariantCulture));
        Card(h, "succeeded", model.Done.ToString(CultureInfo.InvariantCulture), "ok");
        Card(h, "failed", model.Failed.ToString(CultureInfo.InvariantCulture), model.Failed > 0 ? "bad" : "");
        Card(h, "interrupted", model.Interrupted.ToString(CultureInfo.InvariantCulture));
        Card(h, "not run", Math.Max(0, model.Total - model.Done - model.Failed - model.Interrupted).ToString(CultureInfo.InvariantCulture));
        Card(h, "attempts", model.Attempts.ToString(CultureInfo.InvariantCulture));
        Card(h, "wall time", Duration.Format(span));
        Card(h, "mean utilisation", string.Create(CultureInfo.InvariantCulture, $"{meanUse * 100:0.#}%"));
        h.Append("</section>\n");

        Timeline(h, model, barriers ?? []);
        UtilisationChart(h, model);
        HistogramChart(h, model);
        Failures(h, model, workers, stderrTails);
        Nodes(h, nodeSteps ?? []);
        Settings(h, sessions, workers, sessionJobs ?? new Dictionary<int, string>(), releases ?? []);
        h.Append("<script>").Append(Script).Append("</script>\n</body></html>\n");
        return h.ToString();
    }

    private static void Card(StringBuilder h, string label, string value, string cls = "") =>
        h.Append("<div class=\"card ").Append(cls).Append("\"><div class=\"v\">").Append(E(value)).Append("</div><div class=\"l\">").Append(E(label)).Append("</div></div>");

    private static void Timeline(StringBuilder h, ReportModel m, IReadOnlyList<(int Session, int Line, long At, int Failed, bool Stopped)> barriers)
    {
        var rows = Math.Max(1, m.Lanes.Count);
        var rowHeight = Math.Clamp(560 / rows, 2, 16);
        var height = (rows * rowHeight) + 30;
        var total = Math.Max(1.0, m.EndMs - m.StartMs);
        double X(long t) => LabelWidth + ((t - m.StartMs) / total * PlotWidth);
        h.Append("<section id=\"timeline\"><h2>Timeline of slots</h2><p class=\"note\">")
         .Append(m.Detailed ? "One bar per attempt (hover for the task). " : $"{m.Attempts:N0} attempts: each row shows its busy fraction in {ReportModel.Buckets} time buckets. ")
         .Append("Pale red is idle slot time.")
         .Append(barriers.Count > 0 ? " Dashed lines: #SHOAL barrier lines passed (slots idle just before one wait for the last tasks above it)." : "")
         .Append(m.LanesOmitted > 0 ? $" {m.LanesOmitted} further slots not drawn." : "")
         .Append("</p><svg id=\"timeline-svg\" width=\"").Append(LabelWidth + PlotWidth + 10).Append("\" height=\"").Append(height).Append("\" role=\"img\">");
        for (var i = 0; i < m.Lanes.Count; i++)
        {
            var lane = m.Lanes[i];
            var y = i * rowHeight;
            h.Append(Invariant($"<rect class=\"idle\" x=\"{LabelWidth}\" y=\"{y}\" width=\"{PlotWidth}\" height=\"{Math.Max(1, rowHeight - 1)}\"/>"));
            if (rowHeight >= 9)
            {
                h.Append(Invariant($"<text class=\"lane\" x=\"{LabelWidth - 6}\" y=\"{y + rowHeight - 3}\">")).Append(E($"s{lane.Session} {lane.Host} #{lane.Index}")).Append("</text>");
            }

            foreach (var bar in lane.Bars)
            {
                var x = X(bar.FromMs);
                var w = Math.Max(0.5, X(bar.ToMs) - x);
                if (m.Detailed)
                {
                    h.Append(Invariant($"<rect class=\"task {StateClass(bar.State)}\" x=\"{x:0.##}\" y=\"{y}\" width=\"{w:0.##}\" height=\"{Math.Max(1, rowHeight - 1)}\"><title>task {bar.Task}: {StateName(bar.State)}, {(bar.ToMs - bar.FromMs) / 1000.0:0.###} s</title></rect>"));
                }
                else
                {
                    h.Append(Invariant($"<rect class=\"bucket\" x=\"{x:0.##}\" y=\"{y}\" width=\"{w:0.##}\" height=\"{Math.Max(1, rowHeight - 1)}\" fill-opacity=\"{bar.Busy:0.##}\"/>"));
                }
            }
        }

        foreach (var b in barriers.Where(b => b.At >= m.StartMs && b.At <= m.EndMs))
        {
            var x = X(b.At);
            h.Append(Invariant($"<line class=\"barrier\" x1=\"{x:0.##}\" x2=\"{x:0.##}\" y1=\"0\" y2=\"{rows * rowHeight}\"><title>barrier on line {b.Line}{(b.Stopped ? ", the run stopped here (stop-on-failure)" : " passed")}{(b.Failed > 0 ? $", {b.Failed} failed above" : "")}</title></line>"));
        }

        Axis(h, m, rows * rowHeight);
        h.Append("</svg></section>\n");
    }

    private static void Nodes(StringBuilder h, IReadOnlyList<RunJournal.NodeStepRow> steps)
    {
        if (steps.Count == 0)
        {
            return;
        }

        h.Append("<section id=\"nodes\"><h2>Nodes</h2><p class=\"note\">Each node's setup (before its first task) and teardown (after its last).</p><table><tr><th>session</th><th>worker</th><th>host</th><th>step</th><th>result</th><th>started</th><th>output</th></tr>");
        foreach (var s in steps)
        {
            h.Append("<tr><td>").Append(s.Session).Append("</td><td>").Append(s.Worker).Append("</td><td>").Append(E(s.Host)).Append("</td><td>")
             .Append(s.Result.Step == Execution.NodeStep.Setup ? "setup" : "teardown").Append("</td><td class=\"").Append(s.Result.Succeeded ? "ok" : "bad").Append("\">").Append(E(s.Result.Describe()))
             .Append("</td><td>").Append(E(Time(s.Result.StartUnixMs))).Append("</td><td><code>").Append(E(s.Result.Log)).Append("</code>")
             .Append(s.Result.Succeeded || s.Result.Tail.Length == 0 ? "" : "<pre>" + E(s.Result.Tail) + "</pre>").Append("</td></tr>");
        }

        h.Append("</table></section>\n");
    }

    private static void Axis(StringBuilder h, ReportModel m, int y)
    {
        var total = Math.Max(1.0, m.EndMs - m.StartMs);
        for (var k = 0; k <= 5; k++)
        {
            var x = LabelWidth + (k * PlotWidth / 5.0);
            h.Append(Invariant($"<line class=\"tick\" x1=\"{x:0.#}\" x2=\"{x:0.#}\" y1=\"0\" y2=\"{y + 4}\"/><text class=\"axis\" x=\"{x:0.#}\" y=\"{y + 18}\">"))
             .Append(E(Duration.Format(TimeSpan.FromMilliseconds(total * k / 5)))).Append("</text>");
        }
    }

    private static void UtilisationChart(StringBuilder h, ReportModel m)
    {
        const int height = 160;
        var points = new StringBuilder();
        points.Append(Invariant($"{LabelWidth},{height} "));
        for (var b = 0; b < m.Utilisation.Length; b++)
        {
            var x = LabelWidth + ((b + 0.5) * PlotWidth / m.Utilisation.Length);
            points.Append(Invariant($"{x:0.#},{height - (m.Utilisation[b] * height):0.#} "));
        }

        points.Append(Invariant($"{LabelWidth + PlotWidth},{height}"));
        h.Append("<section id=\"utilisation\"><h2>Utilisation over time</h2><p class=\"note\">Busy slot time over all slots of the run, per time bucket.</p>")
         .Append(Invariant($"<svg id=\"utilisation-svg\" width=\"{LabelWidth + PlotWidth + 10}\" height=\"{height + 30}\" role=\"img\">"))
         .Append(Invariant($"<rect class=\"idle\" x=\"{LabelWidth}\" y=\"0\" width=\"{PlotWidth}\" height=\"{height}\"/>"))
         .Append("<polygon class=\"use\" points=\"").Append(points).Append("\"/>")
         .Append(Invariant($"<text class=\"lane\" x=\"{LabelWidth - 6}\" y=\"12\">100%</text><text class=\"lane\" x=\"{LabelWidth - 6}\" y=\"{height}\">0%</text>"));
        Axis(h, m, height);
        h.Append("</svg></section>\n");
    }

    private static void HistogramChart(StringBuilder h, ReportModel m)
    {
        const int height = 160;
        h.Append("<section id=\"durations\"><h2>Task durations</h2><p class=\"note\">Finished attempts, logarithmic bins.</p>")
         .Append(Invariant($"<svg id=\"histogram-svg\" width=\"{LabelWidth + PlotWidth + 10}\" height=\"{height + 30}\" role=\"img\">"));
        var max = Math.Max(1, m.Histogram.Count == 0 ? 1 : m.Histogram.Max(b => b.Count));
        var width = PlotWidth / (double)Math.Max(1, m.Histogram.Count);
        for (var i = 0; i < m.Histogram.Count; i++)
        {
            var (from, to, count) = m.Histogram[i];
            var bh = count * (double)height / max;
            h.Append(Invariant($"<rect class=\"bin\" x=\"{LabelWidth + (i * width):0.#}\" y=\"{height - bh:0.#}\" width=\"{Math.Max(1, width - 1):0.#}\" height=\"{bh:0.#}\"><title>{count} attempts of {Duration.Format(TimeSpan.FromMilliseconds(from))} to {Duration.Format(TimeSpan.FromMilliseconds(to))}</title></rect>"));
            if (i % 5 == 0)
            {
                h.Append(Invariant($"<text class=\"axis\" x=\"{LabelWidth + (i * width):0.#}\" y=\"{height + 18}\">")).Append(E(Duration.Format(TimeSpan.FromMilliseconds(from)))).Append("</text>");
            }
        }

        h.Append("</svg></section>\n");
    }

    private static void Failures(StringBuilder h, ReportModel m, IReadOnlyList<RunJournal.WorkerRow> workers, IReadOnlyDictionary<int, string> tails)
    {
        var hosts = workers.ToDictionary(w => (w.Session, w.Id), w => w.Host);
        h.Append("<section id=\"failures\"><h2>Failures</h2>");
        if (m.Failures.Count == 0)
        {
            h.Append("<p class=\"note\">No task failed.</p></section>\n");
            return;
        }

        h.Append("<p class=\"note\">").Append(m.Failed).Append(" tasks failed in their latest attempt").Append(m.Failed > m.Failures.Count ? $"; the first {m.Failures.Count} are shown" : "")
         .Append(". Full output: <code>shoal cat ID --stderr</code>.</p><table><tr><th>task</th><th>result</th><th>attempt</th><th>host</th><th>duration</th><th>end of stderr</th></tr>");
        foreach (var a in m.Failures.Take(100))
        {
            var result = a.State == AttemptState.TimedOut ? "timed out" : a.Status < 0 ? $"signal {-a.Status}" : $"exit {a.Status}";
            h.Append("<tr class=\"failure\"><td>").Append(a.TaskId).Append("</td><td>").Append(E(result)).Append("</td><td>").Append(a.Attempt)
             .Append("</td><td>").Append(E(hosts.GetValueOrDefault((a.Session, a.Worker), "?"))).Append("</td><td>").Append(E(Duration.Format(TimeSpan.FromMilliseconds(a.DurationMs))))
             .Append("</td><td><pre>").Append(E(tails.GetValueOrDefault(a.TaskId, ""))).Append("</pre></td></tr>");
        }

        h.Append("</table></section>\n");
    }

    private static void Settings(StringBuilder h, IReadOnlyList<RunJournal.SessionRow> sessions, IReadOnlyList<RunJournal.WorkerRow> workers, IReadOnlyDictionary<int, string> jobs, IReadOnlyList<RunJournal.ReleaseRow> releases)
    {
        h.Append("<section id=\"settings\"><h2>Runs and settings</h2><table><tr><th>session</th><th>SLURM job</th><th>started</th><th>ended</th><th>host</th><th>command</th><th>outcome</th><th>workers</th></tr>");
        foreach (var s in sessions)
        {
            var ws = workers.Where(w => w.Session == s.Id).Select(w =>
                $"{w.Host}: {w.Slots} slots{(w.Gpus.Length > 0 ? ", GPUs " + w.Gpus : "")}" +
                (releases.FirstOrDefault(r => r.Session == s.Id && r.Worker == w.Id) is { } r ? (r.Error is null ? $" (handed back at {Time(r.At)})" : $" (hand-back failed: {r.Error})") : ""));
            h.Append("<tr><td>").Append(s.Id).Append("</td><td>").Append(E(jobs.GetValueOrDefault(s.Id, ""))).Append("</td><td>").Append(E(Time(s.Started))).Append("</td><td>").Append(E(s.Ended is { } e ? Time(e) : "running or killed"))
             .Append("</td><td>").Append(E(s.Host)).Append("</td><td><code>shoal ").Append(E(s.Args)).Append("</code></td><td>").Append(E(s.Outcome ?? ""))
             .Append("</td><td>").Append(E(string.Join("; ", ws))).Append("</td></tr>");
        }

        h.Append("</table></section>\n");
    }

    private static string Time(long unixMs) => DateTimeOffset.FromUnixTimeMilliseconds(unixMs).ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);

    private static string StateClass(AttemptState s) => s switch
    {
        AttemptState.Succeeded => "ok",
        AttemptState.Running => "run",
        AttemptState.Interrupted => "int",
        _ => "bad",
    };

    private static string StateName(AttemptState s) => s switch
    {
        AttemptState.Succeeded => "succeeded",
        AttemptState.Running => "running",
        AttemptState.Interrupted => "interrupted",
        AttemptState.TimedOut => "timed out",
        _ => "failed",
    };

    private static string E(string s) => WebUtility.HtmlEncode(s);

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    private const string Css = """
        body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2330;background:#fff}
        h1{margin:0 0 4px;font-size:22px}h2{font-size:17px;margin:28px 0 4px}.sub,.note{color:#5b6475;margin:2px 0 8px}
        .cards{display:flex;flex-wrap:wrap;gap:10px;margin-top:16px}.card{border:1px solid #d8dde6;border-radius:8px;padding:8px 14px;min-width:90px}
        .card .v{font-size:20px;font-weight:600}.card .l{color:#5b6475;font-size:12px}.card.ok .v{color:#1f7a3a}.card.bad .v{color:#b3261e}
        svg{display:block;max-width:100%;height:auto}rect.idle{fill:#f6dede}rect.task.ok,rect.bucket{fill:#2f6fde}rect.task.bad{fill:#c62828}line.barrier{stroke:#333;stroke-width:1.5;stroke-dasharray:4 3}td.bad{color:#c62828}
        rect.task.int{fill:#f0a500}rect.task.run{fill:#7aa7f5}rect.bin{fill:#2f6fde}polygon.use{fill:#2f6fde;fill-opacity:.75}
        text.lane{font-size:10px;text-anchor:end;fill:#5b6475}text.axis{font-size:11px;text-anchor:middle;fill:#5b6475}line.tick{stroke:#c9ced8;stroke-width:1}
        table{border-collapse:collapse;margin-top:6px}td,th{border:1px solid #d8dde6;padding:4px 8px;text-align:left;vertical-align:top}
        pre{margin:0;max-width:560px;white-space:pre-wrap;font-size:12px}code{font-size:12px}
        rect.task:hover{stroke:#111;stroke-width:1}
        """;

    private const string Script = """
        document.body.dataset.ready = "1";
        document.body.dataset.tasks = String(document.querySelectorAll("rect.task").length);
        """;
}
