using Shoal.Journal;

namespace Shoal.Reporting;

/// <summary>What <c>shoal status</c> shows, computed from a journal (read-only, beside a live writer) and the clock.</summary>
public sealed record RunStatus(
    string RunDir,
    string Origin,
    bool Active,
    int Total,
    int NotStarted,
    int Running,
    int Done,
    int Failed,
    int Interrupted,
    double RecentRate,
    double OverallRate,
    TimeSpan? Eta,
    IReadOnlyList<WorkerUse> Workers,
    IReadOnlyList<(int TaskId, string Host, TimeSpan Elapsed)> LongestRunning)
{
    /// <summary>When the latest session's SLURM job ends (unix ms), if known.</summary>
    public long? JobEnd { get; init; }

    /// <summary>The jobs this run submitted (shoal submit and --continue), oldest first.</summary>
    public IReadOnlyList<RunJournal.ChainRow> Chain { get; init; } = [];

    /// <summary>The SLURM job of each session that ran in one.</summary>
    public IReadOnlyDictionary<int, string> SessionJobs { get; init; } = new Dictionary<int, string>();

    /// <summary>Nodes the latest session handed back to SLURM.</summary>
    public IReadOnlyList<RunJournal.ReleaseRow> Releases { get; init; } = [];

    /// <summary>The latest session's node setups and teardowns.</summary>
    public IReadOnlyList<RunJournal.NodeStepRow> NodeSteps { get; init; } = [];

    /// <summary>The barriers the latest session passed (or stopped at): line, when, failures above it.</summary>
    public IReadOnlyList<(int Line, long At, int Failed, bool Stopped)> Barriers { get; init; } = [];

    public static readonly TimeSpan RecentWindow = TimeSpan.FromSeconds(60);

    public static RunStatus Read(RunJournal journal, string runDir, bool active, long nowUnixMs)
    {
        ArgumentNullException.ThrowIfNull(journal);
        var total = int.TryParse(journal.GetMeta("tasks.count"), out var t) ? t : 0;
        var (byState, withAttempts) = journal.LatestStateCounts();
        int Count(params AttemptState[] states) => states.Sum(s => byState.GetValueOrDefault(s));
        var sessions = journal.Sessions();
        var session = sessions.LastOrDefault();
        var workers = journal.Workers().Where(w => session is not null && w.Session == session.Id).ToList();
        var done = Count(AttemptState.Succeeded);
        var failed = Count(AttemptState.Failed, AttemptState.TimedOut);
        var running = active ? Count(AttemptState.Running) : 0;
        var interrupted = Count(AttemptState.Interrupted) + (active ? 0 : Count(AttemptState.Running));
        var recent = journal.FinishedSince(nowUnixMs - (long)RecentWindow.TotalMilliseconds) / RecentWindow.TotalSeconds;
        var sessionEnd = session?.Ended ?? nowUnixMs;
        var sessionSeconds = session is null ? 0 : Math.Max(0.001, (sessionEnd - session.Started) / 1000.0);
        var finishedInSession = session is null ? 0 : journal.FinishedSince(session.Started);
        var overall = session is null ? 0 : finishedInSession / sessionSeconds;
        var remaining = total - done - failed;
        var rate = recent > 0 ? recent : overall;
        TimeSpan? eta = active && rate > 0 ? TimeSpan.FromSeconds(remaining / rate) : null;

        var uses = new List<WorkerUse>();
        if (session is not null)
        {
            var busy = journal.WorkerBusy(session.Id, nowUnixMs, countRunning: active).ToDictionary(b => b.Worker);
            foreach (var w in workers)
            {
                var (_, ms, runningHere) = busy.GetValueOrDefault(w.Id);
                uses.Add(new WorkerUse(w.Id, w.Host, w.Slots, active ? runningHere : 0, ms / 1000.0 / (w.Slots * sessionSeconds)));
            }
        }

        var hosts = workers.ToDictionary(w => w.Id, w => w.Host);
        var longest = active
            ? journal.LongestRunning(5).Select(a => (a.TaskId, hosts.GetValueOrDefault(a.Worker, "?"), TimeSpan.FromMilliseconds(Math.Max(0, nowUnixMs - a.StartUnixMs)))).ToList()
            : [];
        return new RunStatus(runDir, journal.GetMeta("tasks.origin") ?? "?", active, total, Math.Max(0, total - withAttempts), running, done, failed, interrupted, recent, overall, eta, uses, longest)
        {
            JobEnd = active && long.TryParse(journal.GetMeta("job.end"), out var end) ? end : null,
            Chain = journal.Chain(),
            SessionJobs = journal.SessionJobs(),
            Releases = session is null ? [] : [.. journal.Releases().Where(r => r.Session == session.Id)],
            NodeSteps = session is null ? [] : [.. journal.NodeSteps().Where(r => r.Session == session.Id)],
            Barriers = session is null ? [] : [.. journal.Barriers().Where(b => b.Session == session.Id).Select(b => (b.Line, b.At, b.Failed, b.Stopped))],
        };
    }
}

/// <summary>One worker's share of the run: <see cref="Utilisation"/> is busy slot-time over available slot-time.</summary>
public sealed record WorkerUse(int Id, string Host, int Slots, int Running, double Utilisation);
