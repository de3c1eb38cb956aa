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

    /// <summary>The bounds of a run's attempts: known before the one pass that buckets them.</summary>
    public readonly record struct Extent(long Count, long StartMs, long EndMs, long MinDurationMs, long MaxDurationMs, long Finished);

    /// <summary>At most this many failures are kept in <see cref="Failures"/> (the page shows 100; <see cref="Failed"/> counts all).</summary>
    public const int MaxFailuresKept = 100;

    /// <summary>For tests and small lists: the extent from the list, then <see cref="Build(IEnumerable{AttemptRecord}, Extent, IReadOnlyList{RunJournal.WorkerRow}, IReadOnlyList{RunJournal.SessionRow}, int, long)"/>.</summary>
    public static ReportModel Build(IReadOnlyList<AttemptRecord> attempts, IReadOnlyList<RunJournal.WorkerRow> workers, IReadOnlyList<RunJournal.SessionRow> sessions, int total, long nowMs)
    {
        ArgumentNullException.ThrowIfNull(attempts);
        var finished = attempts.Where(a => a.Finished).ToList();
        var extent = new Extent(
            attempts.Count,
            attempts.Count == 0 ? nowMs : attempts.Min(a => a.StartUnixMs),
            attempts.Count == 0 ? nowMs : attempts.Max(a => End(a, nowMs)),
            finished.Count == 0 ? 0 : finished.Min(a => a.DurationMs),
            finished.Count == 0 ? 0 : finished.Max(a => a.DurationMs),
            finished.Count);
        return Build(attempts.OrderBy(a => a.TaskId).ThenBy(a => a.Attempt), extent, workers, sessions, total, nowMs);
    }

    /// <summary>One pass over the attempts in (task, attempt) order, holding only what the page shows: bars for up to
    /// <see cref="MaxTaskRects"/> attempts or <see cref="Buckets"/> numbers per drawn lane, the first
    /// <see cref="MaxLanes"/> lanes, <see cref="MaxFailuresKept"/> failures and counts. Memory does not grow with the
    /// number of attempts.</summary>
    public static ReportModel Build(IEnumerable<AttemptRecord> attempts, Extent extent, IReadOnlyList<RunJournal.WorkerRow> workers, IReadOnlyList<RunJournal.SessionRow> sessions, int total, long nowMs)
    {
        ArgumentNullException.ThrowIfNull(attempts);
        ArgumentNullException.ThrowIfNull(workers);
        ArgumentNullException.ThrowIfNull(sessions);
        var start = extent.StartMs;
        var end = Math.Max(start + 1, extent.EndMs);
        var bucketMs = Math.Max(1.0, (end - start) / (double)Buckets);
        var detailed = extent.Count <= MaxTaskRects;
        var hosts = workers.ToDictionary(w => (w.Session, w.Id), w => w.Host);

        // The lanes drawn are the MaxLanes smallest (session, worker, lane) keys. A key that is not among the
        // smallest seen so far can never be later (the kept ones only get smaller), so it is dropped for good.
        var kept = new Dictionary<(int, int, int), LaneData>();
        var order = new SortedSet<(int, int, int)>();
        var seen = new HashSet<(int, int, int)>();
        var used = new double[Buckets];
        var (histogram, lo, hi) = NewHistogram(extent);
        var failures = new List<AttemptRecord>();
        int done = 0, failed = 0, interrupted = 0;
        long count = 0;
        AttemptRecord? latest = null;
        foreach (var a in attempts)
        {
            count++;
            if (latest is { } l && l.TaskId != a.TaskId)
            {
                Tally(l);
            }

            latest = a;
            var aEnd = End(a, nowMs);
            Spread(used, a.StartUnixMs - start, aEnd - start, bucketMs);
            if (a.Finished)
            {
                AddToHistogram(histogram, lo, hi, a.DurationMs);
            }

            var key = (a.Session, a.Worker, a.Lane);
            if (!kept.TryGetValue(key, out var lane))
            {
                seen.Add(key);
                if (kept.Count >= MaxLanes)
                {
                    var last = order.Max;
                    if (key.CompareTo(last) > 0)
                    {
                        continue;
                    }

                    kept.Remove(last);
                    order.Remove(last);
                }

                lane = new LaneData(detailed);
                kept[key] = lane;
                order.Add(key);
            }

            if (detailed)
            {
                lane.Bars!.Add(new Bar(a.StartUnixMs, aEnd, a.TaskId, a.State, 1));
            }
            else
            {
                Spread(lane.Busy!, a.StartUnixMs - start, aEnd - start, bucketMs);
            }
        }

        if (latest is { } final)
        {
            Tally(final);
        }

        var lanes = new List<Lane>(kept.Count);
        foreach (var (session, worker, index) in order)
        {
            var data = kept[(session, worker, index)];
            List<Bar> bars;
            if (detailed)
            {
                bars = data.Bars!;
            }
            else
            {
                bars = [];
                for (var b = 0; b < Buckets; b++)
                {
                    if (data.Busy![b] > 0)
                    {
                        bars.Add(new Bar(start + (long)(b * bucketMs), start + (long)((b + 1) * bucketMs), 0, AttemptState.Succeeded, Math.Min(1, data.Busy[b] / bucketMs)));
                    }
                }
            }

            lanes.Add(new Lane(session, worker, hosts.GetValueOrDefault((session, worker), "?"), index, bars));
        }

        // Utilisation: busy slot-time over the slots of the sessions that were running in each bucket.
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

        return new ReportModel
        {
            StartMs = count == 0 ? nowMs : start,
            EndMs = count == 0 ? nowMs : end,
            Lanes = lanes,
            Detailed = detailed,
            LanesOmitted = Math.Max(0, seen.Count - MaxLanes),
            Utilisation = utilisation,
            Histogram = HistogramBinsOf(histogram, lo, hi, extent.Finished),
            Failures = failures,
            Total = total,
            Done = done,
            Failed = failed,
            Interrupted = interrupted,
            Attempts = (int)Math.Min(int.MaxValue, count),
        };

        void Tally(AttemptRecord a)
        {
            switch (a.State)
            {
                case AttemptState.Succeeded:
                    done++;
                    break;
                case AttemptState.Failed or AttemptState.TimedOut:
                    failed++;
                    if (failures.Count < MaxFailuresKept)
                    {
                        failures.Add(a);
                    }

                    break;
                case AttemptState.Interrupted:
                    interrupted++;
                    break;
            }
        }
    }

    private static long End(AttemptRecord a, long nowMs) => a.State == AttemptState.Running ? Math.Max(a.StartUnixMs, nowMs) : a.StartUnixMs + a.DurationMs;

    private sealed class LaneData(bool detailed)
    {
        public List<Bar>? Bars { get; } = detailed ? [] : null;

        public double[]? Busy { get; } = detailed ? null : new double[Buckets];
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

        var extent = new Extent(durationsMs.Count, 0, 0, (long)durationsMs.Min(), (long)durationsMs.Max(), durationsMs.Count);
        var (counts, lo, hi) = NewHistogram(extent);
        foreach (var d in durationsMs)
        {
            AddToHistogram(counts, lo, hi, (long)d);
        }

        return HistogramBinsOf(counts, lo, hi, durationsMs.Count);
    }

    private static (int[] Counts, double Lo, double Hi) NewHistogram(Extent extent) =>
        (new int[HistogramBins], Math.Log10(Math.Max(1, extent.MinDurationMs)), Math.Log10(Math.Max(1, extent.MaxDurationMs)) + 1e-9);

    private static void AddToHistogram(int[] counts, double lo, double hi, long durationMs)
    {
        if (hi - lo < 1e-6)
        {
            counts[0]++;
            return;
        }

        var x = (Math.Log10(Math.Max(1, durationMs)) - lo) / (hi - lo);
        counts[Math.Clamp((int)(x * HistogramBins), 0, HistogramBins - 1)]++;
    }

    private static List<(double FromMs, double ToMs, int Count)> HistogramBinsOf(int[] counts, double lo, double hi, long finished)
    {
        if (finished == 0)
        {
            return [];
        }

        if (hi - lo < 1e-6)
        {
            return [(Math.Pow(10, lo), Math.Pow(10, lo), counts[0])];
        }

        var step = (hi - lo) / HistogramBins;
        return [.. counts.Select((c, i) => (Math.Pow(10, lo + (i * step)), Math.Pow(10, lo + ((i + 1) * step)), c))];
    }
}
