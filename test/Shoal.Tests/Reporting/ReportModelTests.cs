using Shoal.Journal;
using Shoal.Reporting;

namespace Shoal.Tests.Reporting;

public class ReportModelTests
{
    private static readonly RunJournal.SessionRow Session = new(1, 0, 10_000, "h", 1, "run t", "finished");
    private static readonly RunJournal.WorkerRow Worker = new(1, 0, "h", 2, "", "w0-");

    private static AttemptRecord A(int task, long start, long duration, AttemptState state = AttemptState.Succeeded, int lane = 0, int attempt = 1) =>
        new(task, attempt, state, state == AttemptState.Failed ? 1 : 0, start, duration, 1, 0, lane, 0, 0, 0, 0);

    [Fact]
    public void Spread_AddsOverlapPerBucket()
    {
        var buckets = new double[4];
        ReportModel.Spread(buckets, 50, 250, 100);
        Assert.Equal([50, 100, 50, 0], buckets);
    }

    [Fact]
    public void Build_HalfBusyTwoSlots_UtilisationHalf_AndFailuresListed()
    {
        // Two slots for 10 s; lane 0 busy the whole time, lane 1 idle: 50 % everywhere.
        AttemptRecord[] attempts = [A(1, 0, 5_000), A(2, 5_000, 5_000, AttemptState.Failed), A(2, 9_000, 1_000, AttemptState.Failed, lane: 1, attempt: 0)];
        var model = ReportModel.Build(attempts[..2], [Worker], [Session], total: 3, nowMs: 10_000);

        Assert.True(model.Detailed);
        Assert.All(model.Utilisation, u => Assert.Equal(0.5, u, 3));
        Assert.Equal(2, Assert.Single(model.Lanes).Bars.Count);
        Assert.Equal(2, Assert.Single(model.Failures).TaskId);
        Assert.Equal((1, 1, 0), (model.Done, model.Failed, model.Interrupted));
        Assert.Equal(2, model.Histogram.Sum(b => b.Count));
    }

    [Fact]
    public void Build_ManyAttempts_AggregatesIntoBuckets_PageStaysSmall()
    {
        const int n = 100_000;
        var attempts = Enumerable.Range(1, n).Select(i => A(i, (i / 2) * 10L, 10, lane: i % 2)).ToList();
        var session = Session with { Ended = n * 5L };
        var model = ReportModel.Build(attempts, [Worker], [session], n, n * 5L);

        Assert.False(model.Detailed);
        Assert.Equal(2, model.Lanes.Count);
        Assert.All(model.Lanes, l => Assert.True(l.Bars.Count <= ReportModel.Buckets));
        Assert.InRange(model.Utilisation.Average(), 0.95, 1.0);
        var html = HtmlReport.Render(model, "/r", "t", [session], [Worker], new Dictionary<int, string>(), DateTimeOffset.UnixEpoch);
        Assert.InRange(html.Length, 1, 2_000_000);
        Assert.DoesNotContain("class=\"task", html, StringComparison.Ordinal);
    }

    [Fact]
    public void Build_MoreLanesThanDrawn_KeepsTheFirstLanesWhole_WhateverOrderTheAttemptsComeIn()
    {
        // 1,500 lanes, tasks spread over them out of lane order (task i on lane i * 7 mod 1,500), 3 attempts per lane.
        const int lanes = 1_500;
        var attempts = Enumerable.Range(1, lanes * 3).Select(i => A(i, i * 10L, 10, lane: i * 7 % lanes)).ToList();
        var worker = Worker with { Slots = lanes };
        var model = ReportModel.Build(attempts, [worker], [Session with { Ended = lanes * 30L + 10 }], attempts.Count, lanes * 30L + 10);

        Assert.True(model.Detailed);
        Assert.Equal(ReportModel.MaxLanes, model.Lanes.Count);
        Assert.Equal(lanes - ReportModel.MaxLanes, model.LanesOmitted);
        Assert.Equal(Enumerable.Range(0, ReportModel.MaxLanes), model.Lanes.Select(l => l.Index));
        Assert.All(model.Lanes, l => Assert.Equal(3, l.Bars.Count));
    }

    [Fact]
    public void Build_ManyFailures_KeepsTheFirstHundred_CountsAll_AndThePageSaysSo()
    {
        var attempts = Enumerable.Range(1, 250).Select(i => A(i, i, 10, i % 5 == 0 ? AttemptState.Succeeded : AttemptState.Failed)).ToList();
        var model = ReportModel.Build(attempts, [Worker], [Session], 250, 10_000);

        Assert.Equal(200, model.Failed);
        Assert.Equal(ReportModel.MaxFailuresKept, model.Failures.Count);
        Assert.Equal(Enumerable.Range(1, 250).Where(i => i % 5 != 0).Take(100), model.Failures.Select(f => f.TaskId));
        var html = HtmlReport.Render(model, "/r", "t", [Session], [Worker], new Dictionary<int, string>(), DateTimeOffset.UnixEpoch);
        Assert.Contains("200 tasks failed in their latest attempt; the first 100 are shown", html, StringComparison.Ordinal);
    }

    [Fact]
    public void Build_LatestAttemptDecides_EvenWhenRetriesComeOutOfOrder()
    {
        // Task 1 failed, then succeeded on its retry; task 2 succeeded, then (a --retry-failed rerun) is running.
        AttemptRecord[] attempts = [A(2, 50, 10, AttemptState.Running, attempt: 2), A(1, 20, 10, attempt: 2), A(1, 0, 10, AttemptState.Failed), A(2, 0, 10)];
        var model = ReportModel.Build(attempts, [Worker], [Session], 2, 100);
        Assert.Equal((1, 0, 0), (model.Done, model.Failed, model.Interrupted));
        Assert.Empty(model.Failures);
        Assert.Equal(4, model.Attempts);
    }

    [Fact]
    public void Render_EscapesUserText()
    {
        var model = ReportModel.Build([A(1, 0, 10, AttemptState.Failed)], [Worker], [Session with { Args = "run <script>x</script>" }], 1, 10);
        var html = HtmlReport.Render(model, "/r", "<b>t</b>", [Session with { Args = "run <script>x</script>" }], [Worker], new Dictionary<int, string> { [1] = "</pre><script>alert(1)</script>" }, DateTimeOffset.UnixEpoch);
        Assert.DoesNotContain("<script>x", html, StringComparison.Ordinal);
        Assert.DoesNotContain("<script>alert", html, StringComparison.Ordinal);
        Assert.Contains("&lt;b&gt;t&lt;/b&gt;", html, StringComparison.Ordinal);
    }
}
