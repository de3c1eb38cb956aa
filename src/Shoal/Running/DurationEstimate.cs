namespace Shoal.Running;

/// <summary>
/// What finished attempts took, kept as a histogram with buckets 9 % wide (2^(1/8)) from 1 ms to days: constant
/// memory for millions of tasks. <see cref="Percentile"/> answers with a bucket's upper edge, so an estimate errs
/// long by at most 9 %. A high percentile ignores a few outliers: at the 95th, one task in twenty may take longer.
/// </summary>
public sealed class DurationEstimate
{
    private const int PerDoubling = 8;
    private const int Buckets = 40 * PerDoubling; // 2^40 ms: 34 years
    private readonly long[] _counts = new long[Buckets + 1];

    public long Count { get; private set; }

    public void Add(long milliseconds)
    {
        var ms = Math.Max(1, milliseconds);
        var bucket = (int)Math.Ceiling(Math.Log2(ms) * PerDoubling);
        _counts[Math.Clamp(bucket, 0, Buckets)]++;
        Count++;
    }

    /// <summary>The duration that <paramref name="fraction"/> of the attempts seen did not exceed, or null before any.</summary>
    public TimeSpan? Percentile(double fraction)
    {
        if (Count == 0)
        {
            return null;
        }

        var rank = (long)Math.Ceiling(fraction * Count);
        long seen = 0;
        for (var b = 0; b <= Buckets; b++)
        {
            seen += _counts[b];
            if (seen >= Math.Max(1, rank))
            {
                return TimeSpan.FromMilliseconds(Math.Pow(2, (double)b / PerDoubling));
            }
        }

        return TimeSpan.FromMilliseconds(Math.Pow(2, (double)Buckets / PerDoubling));
    }
}
