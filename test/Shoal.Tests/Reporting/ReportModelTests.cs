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
    public void Render_EscapesUserText()
    {
        var model = ReportModel.Build([A(1, 0, 10, AttemptState.Failed)], [Worker], [Session with { Args = "run <script>x</script>" }], 1, 10);
        var html = HtmlReport.Render(model, "/r", "<b>t</b>", [Session with { Args = "run <script>x</script>" }], [Worker], new Dictionary<int, string> { [1] = "</pre><script>alert(1)</script>" }, DateTimeOffset.UnixEpoch);
        Assert.DoesNotContain("<script>x", html, StringComparison.Ordinal);
        Assert.DoesNotContain("<script>alert", html, StringComparison.Ordinal);
        Assert.Contains("&lt;b&gt;t&lt;/b&gt;", html, StringComparison.Ordinal);
    }
}
