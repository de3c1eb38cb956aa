using System.Globalization;
using System.Text;

namespace Shoal.Cluster;

/// <summary>
/// SLURM's compact host lists and per-node counts: <c>node[01-04,07]</c>, <c>gpu-a[1-2],login5</c>,
/// <c>rack[1-2]-n[01-02]</c> (several bracket groups expand as a product, as <c>scontrol show hostnames</c> does),
/// and <c>SLURM_JOB_CPUS_PER_NODE</c>'s <c>36(x2),12</c>.
/// </summary>
public static class Hostlist
{
    private const int MaxHosts = 1_000_000;

    public static List<string> Expand(string hostlist)
    {
        ArgumentNullException.ThrowIfNull(hostlist);
        var hosts = new List<string>();
        foreach (var item in SplitTopLevel(hostlist))
        {
            if (item.Length == 0)
            {
                continue;
            }

            ExpandItem(item, hosts);
            if (hosts.Count > MaxHosts)
            {
                throw new FormatException($"host list '{hostlist}' names more than {MaxHosts} hosts");
            }
        }

        return hosts;
    }

    /// <summary>Splits at commas outside brackets.</summary>
    private static IEnumerable<string> SplitTopLevel(string s)
    {
        var depth = 0;
        var start = 0;
        for (var i = 0; i < s.Length; i++)
        {
            switch (s[i])
            {
                case '[':
                    if (++depth > 1)
                    {
                        throw new FormatException($"nested brackets in host list '{s}'");
                    }

                    break;
                case ']':
                    if (--depth < 0)
                    {
                        throw new FormatException($"unbalanced ']' in host list '{s}'");
                    }

                    break;
                case ',' when depth == 0:
                    yield return s[start..i].Trim();
                    start = i + 1;
                    break;
            }
        }

        if (depth != 0)
        {
            throw new FormatException($"unbalanced '[' in host list '{s}'");
        }

        yield return s[start..].Trim();
    }

    private static void ExpandItem(string item, List<string> output)
    {
        var open = item.IndexOf('[', StringComparison.Ordinal);
        if (open < 0)
        {
            output.Add(item);
            return;
        }

        var close = item.IndexOf(']', open);
        var prefix = item[..open];
        var rest = item[(close + 1)..];
        var tails = new List<string>();
        ExpandItem(rest, tails);
        foreach (var value in Ranges(item[(open + 1)..close], item))
        {
            foreach (var tail in tails)
            {
                output.Add(prefix + value + tail);
            }
        }
    }

    private static IEnumerable<string> Ranges(string body, string item)
    {
        foreach (var part in body.Split(','))
        {
            var p = part.Trim();
            var dash = p.IndexOf('-', StringComparison.Ordinal);
            if (dash < 0)
            {
                if (p.Length == 0 || !p.All(char.IsAsciiDigit))
                {
                    throw new FormatException($"'{p}' in '{item}' is not a number or range");
                }

                yield return p;
                continue;
            }

            var a = p[..dash];
            var b = p[(dash + 1)..];
            if (a.Length == 0 || b.Length == 0 || !a.All(char.IsAsciiDigit) || !b.All(char.IsAsciiDigit))
            {
                throw new FormatException($"'{p}' in '{item}' is not a range like 01-04");
            }

            var from = long.Parse(a, CultureInfo.InvariantCulture);
            var to = long.Parse(b, CultureInfo.InvariantCulture);
            if (to < from || to - from > MaxHosts)
            {
                throw new FormatException($"range '{p}' in '{item}' is backwards or too long");
            }

            // Zero padding: the width of the lower bound, as SLURM writes it (node[01-10]).
            var width = a.Length > 1 && a[0] == '0' ? a.Length : 0;
            for (var n = from; n <= to; n++)
            {
                yield return width > 0 ? n.ToString(CultureInfo.InvariantCulture).PadLeft(width, '0') : n.ToString(CultureInfo.InvariantCulture);
            }
        }
    }

    /// <summary>Expands <c>36(x2),12</c> to [36, 36, 12].</summary>
    public static List<int> ExpandCounts(string counts)
    {
        ArgumentNullException.ThrowIfNull(counts);
        var result = new List<int>();
        foreach (var raw in counts.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var paren = raw.IndexOf('(', StringComparison.Ordinal);
            var repeat = 1;
            var number = raw;
            if (paren >= 0)
            {
                if (!raw.EndsWith(')') || raw.Length < paren + 4 || raw[paren + 1] != 'x'
                    || !int.TryParse(raw.AsSpan(paren + 2, raw.Length - paren - 3), NumberStyles.None, CultureInfo.InvariantCulture, out repeat) || repeat < 1)
                {
                    throw new FormatException($"'{raw}' in '{counts}' is not COUNT or COUNT(xREPEAT)");
                }

                number = raw[..paren];
            }

            if (!int.TryParse(number, NumberStyles.None, CultureInfo.InvariantCulture, out var n))
            {
                throw new FormatException($"'{raw}' in '{counts}' is not a count");
            }

            if (result.Count + repeat > MaxHosts)
            {
                throw new FormatException($"'{counts}' names more than {MaxHosts} nodes");
            }

            result.AddRange(Enumerable.Repeat(n, repeat));
        }

        return result;
    }

    /// <summary>Compresses hosts back into SLURM's form for messages (node1,node2,node3 → node[1-3]).</summary>
    public static string Compress(IReadOnlyList<string> hosts)
    {
        ArgumentNullException.ThrowIfNull(hosts);
        var sb = new StringBuilder();
        var i = 0;
        while (i < hosts.Count)
        {
            var (prefix, digits) = SplitNumber(hosts[i]);
            var j = i;
            while (j + 1 < hosts.Count && SplitNumber(hosts[j + 1]) is var (p, d) && p == prefix && d.Length > 0 && digits.Length > 0
                   && d.Length == digits.Length && long.Parse(d, CultureInfo.InvariantCulture) == long.Parse(SplitNumber(hosts[j]).Digits, CultureInfo.InvariantCulture) + 1)
            {
                j++;
            }

            if (sb.Length > 0)
            {
                sb.Append(',');
            }

            sb.Append(j == i ? hosts[i] : $"{prefix}[{digits}-{SplitNumber(hosts[j]).Digits}]");
            i = j + 1;
        }

        return sb.ToString();
    }

    private static (string Prefix, string Digits) SplitNumber(string host)
    {
        var k = host.Length;
        while (k > 0 && char.IsAsciiDigit(host[k - 1]))
        {
            k--;
        }

        return (host[..k], host[k..]);
    }
}
