using Shoal.Journal;

namespace Shoal.Reporting;

/// <summary>
/// The data behind <c>shoal report</c>, computed from the journal alone (pure: no I/O). Large runs are aggregated:
/// up to <see cref="MaxTaskRects"/> attempts are drawn one rectangle each on the timeline; beyond that each lane
/// shows its busy fraction in <see cref="Buckets"/> time buckets, so a million tasks make the same size of page as
/// twenty thousand. At most <see cref="MaxLanes"/> lanes are drawn.
/// </summary>
public sealed class ReportModel
{
    public const int Buckets = 300;
    public const int MaxTaskRects = 20_000;
    public const int MaxLanes = 1_000;
    public const int HistogramBins = 30;

    public required long StartMs { get; init; }

    public required long EndMs { get; init; }

    public required IReadOnlyList<Lane> Lanes { get; init; }

    /// <summary>True when <see cref="Lane.Bars"/> hold attempts; false when they hold buckets.</summary>
    public required bool Detailed { get; init; }

    public required int LanesOmitted { get; init; }

    /// <summary>Busy fraction of all slots per time bucket (0..1).</summary>
    public required double[] Utilisation { get; init; }

    public required IReadOnlyList<(double FromMs, double ToMs, int Count)> Histogram { get; init; }

    public required IReadOnlyList<AttemptRecord> Failures { get; init; }

    public required int Total { get; init; }

    public required int Done { get; init; }

    public required int Failed { get; init; }

    public required int Interrupted { get; init; }

    public required int Attempts { get; init; }

    public double BucketMs => Math.Max(1.0, (EndMs - StartMs) / (double)Buckets);

    public sealed record Lane(int Session, int Worker, string Host, int Index, IReadOnlyList<Bar> Bars);

    /// <summary>A span on a lane: one attempt (Task > 0) or a bucket with its busy fraction.</summary>
    public readonly record struct Bar(long FromMs, long ToMs, int Task, AttemptState State, double Busy);

    public static ReportModel Build(IReadOnlyList<AttemptRecord> attempts, IReadOnlyList<RunJournal.WorkerRow> workers, IReadOnlyList<RunJournal.SessionRow> sessions, int total, long nowMs)
    {
        ArgumentNullException.ThrowIfNull(attempts);
        ArgumentNullException.ThrowIfNull(workers);
        ArgumentNullException.ThrowIfNull(sessions);
        long End(AttemptRecord a) => a.State == AttemptState.Running ? Math.Max(a.StartUnixMs, nowMs) : a.StartUnixMs + a.DurationMs;
        var start = attempts.Count == 0 ? nowMs : attempts.Min(a => a.StartUnixMs);
        var end = attempts.Count == 0 ? nowMs : Math.Max(start + 1, attempts.Max(End));
        var bucketMs = Math.Max(1.0, (end - start) / (double)Buckets);
        var detailed = attempts.Count <= MaxTaskRects;
        var hosts = workers.ToDictionary(w => (w.Session, w.Id), w => w.Host);

        var byLane = attempts.GroupBy(a => (a.Session, a.Worker, a.Lane)).OrderBy(g => g.Key).ToList();
        var lanes = new List<Lane>();
        foreach (var g in byLane.Take(MaxLanes))
        {
            List<Bar> bars;
            if (detailed)
            {
                bars = [.. g.Select(a => new Bar(a.StartUnixMs, End(a), a.TaskId, a.State, 1))];
            }
            else
            {
                var busy = new double[Buckets];
                foreach (var a in g)
                {
                    Spread(busy, a.StartUnixMs - start, End(a) - start, bucketMs);
                }

                bars = [];
                for (var b = 0; b < Buckets; b++)
                {
                    if (busy[b] > 0)
                    {
                        bars.Add(new Bar(start + (long)(b * bucketMs), start + (long)((b + 1) * bucketMs), 0, AttemptState.Succeeded, Math.Min(1, busy[b] / bucketMs)));
                    }
                }
            }

            lanes.Add(new Lane(g.Key.Session, g.Key.Worker, hosts.GetValueOrDefault((g.Key.Session, g.Key.Worker), "?"), g.Key.Lane, bars));
        }

        // Utilisation: busy slot-time over the slots of the sessions that were running in each bucket.
        var used = new double[Buckets];
        foreach (var a in attempts)
        {
            Spread(used, a.StartUnixMs - start, End(a) - start, bucketMs);
        }

        var capacity = new double[Buckets];
        foreach (var s in sessions)
        {
            var slots = workers.Where(w => w.Session == s.Id).Sum(w => w.Slots);
            Spread(capacity, s.Started - start, (s.Ended ?? nowMs) - start, bucketMs, slots);
        }

        var utilisation = new double[Buckets];
        for (var b = 0; b < Buckets; b++)
        {
            utilisation[b] = capacity[b] > 0 ? Math.Min(1, used[b] / capacity[b]) : 0;
        }

        var latest = attempts.GroupBy(a => a.TaskId).Select(g => g.MaxBy(a => a.Attempt)).ToList();
        return new ReportModel
        {
            StartMs = start,
            EndMs = end,
            Lanes = lanes,
            Detailed = detailed,
            LanesOmitted = Math.Max(0, byLane.Count - MaxLanes),
            Utilisation = utilisation,
            Histogram = BinDurations([.. attempts.Where(a => a.Finished).Select(a => (double)a.DurationMs)]),
            Failures = [.. latest.Where(a => a.State is AttemptState.Failed or AttemptState.TimedOut).OrderBy(a => a.TaskId)],
            Total = total,
            Done = latest.Count(a => a.State == AttemptState.Succeeded),
            Failed = latest.Count(a => a.State is AttemptState.Failed or AttemptState.TimedOut),
            Interrupted = latest.Count(a => a.State == AttemptState.Interrupted),
            Attempts = attempts.Count,
        };
    }

    /// <summary>Adds <paramref name="weight"/> × the overlap (ms) of [from, to) with each bucket.</summary>
    internal static void Spread(double[] buckets, double from, double to, double bucketMs, double weight = 1)
    {
        if (to <= from)
        {
            return;
        }

        var first = Math.Max(0, (int)(from / bucketMs));
        var last = Math.Min(buckets.Length - 1, (int)((to - 1e-9) / bucketMs));
        for (var b = first; b <= last; b++)
        {
            var lo = Math.Max(from, b * bucketMs);
            var hi = Math.Min(to, (b + 1) * bucketMs);
            if (hi > lo)
            {
                buckets[b] += (hi - lo) * weight;
            }
        }
    }

    /// <summary>Durations in log-spaced bins (1 ms floor), so seconds-long and hour-long tasks both show.</summary>
    internal static List<(double FromMs, double ToMs, int Count)> BinDurations(IReadOnlyList<double> durationsMs)
    {
        if (durationsMs.Count == 0)
        {
            return [];
        }

        var lo = Math.Log10(Math.Max(1, durationsMs.Min()));
        var hi = Math.Log10(Math.Max(1, durationsMs.Max())) + 1e-9;
        if (hi - lo < 1e-6)
        {
            return [(Math.Pow(10, lo), Math.Pow(10, lo), durationsMs.Count)];
        }

        var counts = new int[HistogramBins];
        foreach (var d in durationsMs)
        {
            var x = (Math.Log10(Math.Max(1, d)) - lo) / (hi - lo);
            counts[Math.Clamp((int)(x * HistogramBins), 0, HistogramBins - 1)]++;
        }

        var step = (hi - lo) / HistogramBins;
        return [.. counts.Select((c, i) => (Math.Pow(10, lo + (i * step)), Math.Pow(10, lo + ((i + 1) * step)), c))];
    }
}
