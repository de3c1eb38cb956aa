using System.Globalization;

namespace Shoal.Tasks;

/// <summary>Parses the durations users write: <c>90</c> (seconds), <c>500ms</c>, <c>90s</c>, <c>10m</c>, <c>2h</c>, <c>1d</c>,
/// combinations such as <c>1h30m</c>, and SLURM's <c>[D-]HH:MM:SS</c> / <c>MM:SS</c>.</summary>
public static class Duration
{
    public static bool TryParse(string text, out TimeSpan value)
    {
        value = default;
        var s = text.Trim();
        if (s.Length == 0)
        {
            return false;
        }

        if (s.Contains(':', StringComparison.Ordinal))
        {
            return TryParseClock(s, out value);
        }

        if (double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var bare))
        {
            if (bare < 0 || double.IsNaN(bare) || bare > TimeSpan.MaxValue.TotalSeconds / 2)
            {
                return false;
            }

            value = TimeSpan.FromSeconds(bare);
            return true;
        }

        var total = TimeSpan.Zero;
        var i = 0;
        while (i < s.Length)
        {
            var start = i;
            while (i < s.Length && (char.IsAsciiDigit(s[i]) || s[i] == '.'))
            {
                i++;
            }

            if (start == i || !double.TryParse(s.AsSpan(start, i - start), NumberStyles.Float, CultureInfo.InvariantCulture, out var n))
            {
                return false;
            }

            var unitStart = i;
            while (i < s.Length && char.IsAsciiLetter(s[i]))
            {
                i++;
            }

            var unit = s[unitStart..i];
            TimeSpan part;
            switch (unit)
            {
                case "ms": part = TimeSpan.FromMilliseconds(n); break;
                case "s": part = TimeSpan.FromSeconds(n); break;
                case "m": part = TimeSpan.FromMinutes(n); break;
                case "h": part = TimeSpan.FromHours(n); break;
                case "d": part = TimeSpan.FromDays(n); break;
                default: return false;
            }

            total += part;
        }

        value = total;
        return true;
    }

    private static bool TryParseClock(string s, out TimeSpan value)
    {
        value = default;
        var days = 0;
        var dash = s.IndexOf('-', StringComparison.Ordinal);
        if (dash >= 0)
        {
            if (!int.TryParse(s.AsSpan(0, dash), NumberStyles.None, CultureInfo.InvariantCulture, out days))
            {
                return false;
            }

            s = s[(dash + 1)..];
        }

        var parts = s.Split(':');
        if (parts.Length is < 2 or > 3)
        {
            return false;
        }

        var numbers = new int[3];
        var offset = 3 - parts.Length;
        for (var k = 0; k < parts.Length; k++)
        {
            if (!int.TryParse(parts[k], NumberStyles.None, CultureInfo.InvariantCulture, out numbers[offset + k]))
            {
                return false;
            }
        }

        value = new TimeSpan(days, numbers[0], numbers[1], numbers[2]);
        return true;
    }

    public static string Format(TimeSpan t)
    {
        if (t.TotalSeconds < 1)
        {
            return $"{t.TotalMilliseconds:0}ms";
        }

        if (t.TotalMinutes < 1)
        {
            return string.Create(CultureInfo.InvariantCulture, $"{t.TotalSeconds:0.#}s");
        }

        if (t.TotalHours < 1)
        {
            return $"{t.Minutes}m{t.Seconds:00}s";
        }

        return $"{(int)t.TotalHours}h{t.Minutes:00}m";
    }
}
