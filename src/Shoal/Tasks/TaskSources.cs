using System.Globalization;
using System.Text;
using System.Text.Unicode;

namespace Shoal.Tasks;

/// <summary>
/// Builds a <see cref="TaskList"/> from a task file, a file of arguments, or a numeric range.
/// Task file syntax (see README): one shell command per line; blank lines and lines starting with <c>#</c>
/// are skipped; a line <c>#SHOAL cpus=4 gpus=1 timeout=10m</c> sets the resources of the next command line.
/// A task's id is the line number of its command, so ids stay stable across runs of the same file.
/// </summary>
public static class TaskSources
{
    public const string DirectivePrefix = "#SHOAL";
    private const int MaxShapes = 256;

    /// <summary>MAX_ARG_STRLEN: the kernel refuses a single exec argument of this many bytes (with its NUL) or more.</summary>
    public const int MaxCommandBytes = 131_072;

    public static TaskList FromTaskFile(byte[] content, string origin)
    {
        // Sized from the line count up front: a million-line file must not grow lists by doubling.
        var lines = content.AsSpan().Count((byte)'\n') + 1;
        var starts = new List<int>(lines);
        var lengths = new List<int>(lines);
        var ids = new List<int>(lines);
        var shapeIndex = new List<byte>(lines);
        var shapes = new List<TaskShape> { TaskShape.Default };
        TaskShape? pending = null;
        var pendingLine = 0;
        var barriers = new List<TaskBarrier>();
        NodeStepCommand? setup = null;
        NodeStepCommand? teardown = null;

        foreach (var (lineNumber, start, length) in Lines(content))
        {
            var line = content.AsSpan(start, length);
            var trimmed = line.TrimStart(" \t"u8);
            if (trimmed.IsEmpty || trimmed.TrimEnd(" \t"u8).IsEmpty)
            {
                continue;
            }

            if (trimmed[0] == '#')
            {
                if (trimmed.StartsWith("#SHOAL"u8) && (trimmed.Length == 6 || trimmed[6] is (byte)' ' or (byte)'\t'))
                {
                    var text = Decode(trimmed, origin, lineNumber);
                    var keyword = FirstWord(text);
                    if (keyword is "barrier" or "node-setup" or "node-teardown")
                    {
                        if (pending is not null)
                        {
                            throw new TaskInputException($"{origin}:{pendingLine}: #SHOAL directive is followed by '#SHOAL {keyword}' on line {lineNumber}, not by a command; a task's settings go right above it");
                        }

                        if (keyword == "barrier")
                        {
                            barriers.Add(new TaskBarrier(lineNumber, starts.Count, ParseBarrier(text, origin, lineNumber)));
                        }
                        else
                        {
                            var step = ParseNodeStep(text, keyword, origin, lineNumber, starts.Count, keyword == "node-setup" ? setup : teardown);
                            if (keyword == "node-setup")
                            {
                                setup = step;
                            }
                            else
                            {
                                teardown = step;
                            }
                        }

                        continue;
                    }

                    if (pending is not null)
                    {
                        throw new TaskInputException($"{origin}:{pendingLine}: #SHOAL directive is followed by another directive on line {lineNumber}, not by a command; put all settings of a task on one #SHOAL line");
                    }

                    pending = ParseDirective(text, origin, lineNumber);
                    pendingLine = lineNumber;
                }

                continue;
            }

            if (line.Contains((byte)0))
            {
                throw new TaskInputException($"{origin}:{lineNumber}: the line contains a NUL byte; a command cannot contain one");
            }

            if (!Utf8.IsValid(line))
            {
                throw new TaskInputException($"{origin}:{lineNumber}: the line is not valid UTF-8");
            }

            if (line.Length >= MaxCommandBytes)
            {
                throw new TaskInputException($"{origin}:{lineNumber}: the command is {line.Length:N0} bytes long; Linux passes at most {MaxCommandBytes - 1:N0} bytes as one argument to the shell (put long scripts in a file)");
            }

            var shape = pending ?? TaskShape.Default;
            pending = null;
            var index = shapes.IndexOf(shape);
            if (index < 0)
            {
                if (shapes.Count == MaxShapes)
                {
                    throw new TaskInputException($"{origin}:{lineNumber}: more than {MaxShapes} distinct #SHOAL settings in one file");
                }

                shapes.Add(shape);
                index = shapes.Count - 1;
            }

            starts.Add(start);
            lengths.Add(length);
            ids.Add(lineNumber);
            shapeIndex.Add((byte)index);
        }

        if (pending is not null)
        {
            throw new TaskInputException($"{origin}:{pendingLine}: #SHOAL directive is not followed by a command");
        }

        var idArray = ids.ToArray();
        return new TaskList(origin, content, [.. starts], [.. lengths], idArray, [.. shapeIndex], shapes, idArray)
        {
            Barriers = barriers,
            NodeSetup = setup,
            NodeTeardown = teardown,
        };
    }

    /// <summary><c>--each-line ARGS -- CMD {}</c>: one task per non-blank line of ARGS, <c>{}</c> replaced by the line, shell-quoted.</summary>
    public static TaskList FromEachLine(byte[] content, string origin, string template)
    {
        RequirePlaceholder(template);
        var starts = new List<int>();
        var lengths = new List<int>();
        var lines = new List<int>();
        foreach (var (lineNumber, start, length) in Lines(content))
        {
            var line = content.AsSpan(start, length);
            if (line.Trim(" \t"u8).IsEmpty)
            {
                continue;
            }

            if (line.Contains((byte)0) || !Utf8.IsValid(line))
            {
                throw new TaskInputException($"{origin}:{lineNumber}: the line contains a NUL byte or is not valid UTF-8");
            }

            starts.Add(start);
            lengths.Add(length);
            lines.Add(lineNumber);
        }

        var ids = Enumerable.Range(1, starts.Count).ToArray();
        return new TaskList(origin, content, [.. starts], [.. lengths], ids, new byte[ids.Length], [TaskShape.Default], [.. lines], template);
    }

    /// <summary><c>--range A-B -- CMD {}</c>: one task per integer in [A, B]; task i (1-based) gets A+i-1.</summary>
    public static TaskList FromRange(string range, string template)
    {
        RequirePlaceholder(template);
        var dash = range.IndexOf('-', 1);
        if (dash < 0
            || !long.TryParse(range.AsSpan(0, dash), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var from)
            || !long.TryParse(range.AsSpan(dash + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var to))
        {
            throw new TaskInputException($"--range '{range}': expected FROM-TO, e.g. 1-1000");
        }

        if (to < from)
        {
            throw new TaskInputException($"--range '{range}': TO is smaller than FROM");
        }

        if (to - from >= 100_000_000)
        {
            throw new TaskInputException($"--range '{range}': more than 100,000,000 tasks");
        }

        var count = (int)(to - from + 1);
        var text = new StringBuilder();
        var starts = new int[count];
        var lengths = new int[count];
        var bytes = 0;
        for (var i = 0; i < count; i++)
        {
            var s = (from + i).ToString(CultureInfo.InvariantCulture);
            starts[i] = bytes;
            lengths[i] = s.Length;
            bytes += s.Length;
            text.Append(s);
        }

        var ids = Enumerable.Range(1, count).ToArray();
        return new TaskList($"--range {range}", Encoding.ASCII.GetBytes(text.ToString()), starts, lengths, ids, new byte[count], [TaskShape.Default], ids, template);
    }

    /// <summary>The lines of <paramref name="content"/>: 1-based number, start, length without the LF or CRLF.
    /// A UTF-8 byte-order mark at the very start (Windows editors write one) is not part of line 1.</summary>
    private static IEnumerable<(int Number, int Start, int Length)> Lines(byte[] content)
    {
        var number = 0;
        var position = content.AsSpan().StartsWith("\uFEFF"u8) ? 3 : 0;
        while (position < content.Length)
        {
            number++;
            var newline = Array.IndexOf(content, (byte)'\n', position);
            var end = newline < 0 ? content.Length : newline;
            var length = end - position;
            if (length > 0 && content[position + length - 1] == '\r')
            {
                length--;
            }

            yield return (number, position, length);
            position = newline < 0 ? content.Length : newline + 1;
        }
    }

    private static void RequirePlaceholder(string template)
    {
        if (!template.Contains("{}", StringComparison.Ordinal))
        {
            throw new TaskInputException($"the command '{template}' has no {{}} to replace");
        }
    }

    private static string Decode(ReadOnlySpan<byte> line, string origin, int lineNumber)
    {
        if (!Utf8.IsValid(line))
        {
            throw new TaskInputException($"{origin}:{lineNumber}: the line is not valid UTF-8");
        }

        return Encoding.UTF8.GetString(line);
    }

    private static string FirstWord(string directive)
    {
        var rest = directive.AsSpan(DirectivePrefix.Length).TrimStart(" \t");
        var end = rest.IndexOfAny(' ', '\t');
        return (end < 0 ? rest : rest[..end]).ToString();
    }

    /// <summary><c>#SHOAL barrier [stop-on-failure]</c>: true when the run stops at it after a failure above.</summary>
    private static bool ParseBarrier(string line, string origin, int lineNumber)
    {
        var words = line[DirectivePrefix.Length..].Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
        var stopOnFailure = false;
        foreach (var word in words.Skip(1))
        {
            if (word != "stop-on-failure")
            {
                throw new TaskInputException($"{origin}:{lineNumber}: unknown barrier option '{word}' (known: stop-on-failure)");
            }

            stopOnFailure = true;
        }

        return stopOnFailure;
    }

    /// <summary><c>#SHOAL node-setup CMD</c> / <c>#SHOAL node-teardown CMD</c>: the rest of the line is the command;
    /// only at the top of the file (before the first task), once each.</summary>
    private static NodeStepCommand ParseNodeStep(string line, string keyword, string origin, int lineNumber, int tasksSoFar, NodeStepCommand? earlier)
    {
        var command = line.AsSpan(DirectivePrefix.Length).TrimStart(" \t")[keyword.Length..].Trim(" \t").ToString();
        if (command.Length == 0)
        {
            throw new TaskInputException($"{origin}:{lineNumber}: #SHOAL {keyword} needs a command, e.g. '#SHOAL {keyword} ./{(keyword == "node-setup" ? "stage-data" : "clean-up")}.sh'");
        }

        if (Encoding.UTF8.GetByteCount(command) >= MaxCommandBytes)
        {
            throw new TaskInputException($"{origin}:{lineNumber}: the #SHOAL {keyword} command is over {MaxCommandBytes - 1:N0} bytes long (put long scripts in a file)");
        }

        if (tasksSoFar > 0)
        {
            throw new TaskInputException($"{origin}:{lineNumber}: #SHOAL {keyword} must come before the first task (it runs once per node, not per task)");
        }

        if (earlier is not null)
        {
            throw new TaskInputException($"{origin}:{lineNumber}: a second #SHOAL {keyword} (the first is on line {earlier.Line}); put the steps in one command or a script");
        }

        return new NodeStepCommand(command, lineNumber);
    }

    internal static TaskShape ParseDirective(string line, string origin, int lineNumber)
    {
        var cpus = 1;
        var gpus = 0;
        TimeSpan? timeout = null;
        var words = line[DirectivePrefix.Length..].Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
        if (words.Length == 0)
        {
            throw new TaskInputException($"{origin}:{lineNumber}: #SHOAL without settings; expected e.g. '#SHOAL cpus=4 gpus=1 timeout=10m'");
        }

        foreach (var word in words)
        {
            var eq = word.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                throw new TaskInputException($"{origin}:{lineNumber}: '{word}' is not KEY=VALUE; expected e.g. '#SHOAL cpus=4 gpus=1 timeout=10m'");
            }

            var key = word[..eq];
            var value = word[(eq + 1)..];
            switch (key)
            {
                case "cpus":
                    cpus = ParseCount(value, 1, key, origin, lineNumber);
                    break;
                case "gpus":
                    gpus = ParseCount(value, 0, key, origin, lineNumber);
                    break;
                case "timeout":
                    if (!Duration.TryParse(value, out var t) || t <= TimeSpan.Zero)
                    {
                        throw new TaskInputException($"{origin}:{lineNumber}: timeout '{value}' is not a positive duration (e.g. 90s, 10m, 1h30m, 01:30:00)");
                    }

                    timeout = t;
                    break;
                default:
                    throw new TaskInputException($"{origin}:{lineNumber}: unknown #SHOAL setting '{key}' (known: cpus, gpus, timeout; and lines of their own: barrier, node-setup, node-teardown)");
            }
        }

        return new TaskShape(cpus, gpus, timeout);
    }

    private static int ParseCount(string value, int minimum, string key, string origin, int lineNumber)
    {
        if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n < minimum || n > 100_000)
        {
            throw new TaskInputException($"{origin}:{lineNumber}: {key}={value} is not a whole number of at least {minimum}");
        }

        return n;
    }
}
