using System.Security.Cryptography;
using System.Text;

namespace Shoal.Tasks;

/// <summary>
/// The tasks of a run, kept compact so that a million of them fit in little memory: the commands stay
/// as UTF-8 slices of the source (or are made from a template on demand), with a 1-based id and a
/// shape index per task. A task is addressed by its index (0-based, dense) inside Shoal and shown by its id.
/// </summary>
public sealed class TaskList
{
    private readonly byte[] _source;
    private readonly int[] _starts;
    private readonly int[] _lengths;
    private readonly int[] _ids;
    private readonly byte[] _shapeIndex;
    private readonly byte[][]? _templateParts;

    internal TaskList(string origin, byte[] source, int[] starts, int[] lengths, int[] ids, byte[] shapeIndex, IReadOnlyList<TaskShape> shapes, int[] lines, string? template = null)
    {
        Origin = origin;
        _source = source;
        _starts = starts;
        _lengths = lengths;
        _ids = ids;
        _shapeIndex = shapeIndex;
        Shapes = shapes;
        Lines = lines;
        if (template is not null)
        {
            // Every {} is replaced; the parts between them are kept as they are.
            _templateParts = [.. template.Split("{}").Select(Encoding.UTF8.GetBytes)];
        }
    }

    /// <summary>The <c>#SHOAL barrier</c> lines of a task file, in order.</summary>
    public IReadOnlyList<TaskBarrier> Barriers { get; init; } = [];

    /// <summary>The task file's <c>#SHOAL node-setup</c> line, if any.</summary>
    public NodeStepCommand? NodeSetup { get; init; }

    /// <summary>The task file's <c>#SHOAL node-teardown</c> line, if any.</summary>
    public NodeStepCommand? NodeTeardown { get; init; }

    /// <summary>Where the tasks came from, for messages: a path, "stdin", or "--range 1-10".</summary>
    public string Origin { get; }

    public int Count => _ids.Length;

    public IReadOnlyList<TaskShape> Shapes { get; }

    /// <summary>The source line of each task (for messages), same as the id for task files.</summary>
    internal int[] Lines { get; }

    public int Id(int index) => _ids[index];

    public int ShapeIndex(int index) => _shapeIndex[index];

    public TaskShape Shape(int index) => Shapes[_shapeIndex[index]];

    /// <summary>Index of the task with this id, or -1. Ids increase with the index.</summary>
    public int IndexOf(int id)
    {
        var i = Array.BinarySearch(_ids, id);
        return i >= 0 ? i : -1;
    }

    public string Command(int index) => Encoding.UTF8.GetString(CommandBytes(index));

    public byte[] CommandBytes(int index)
    {
        var slice = _source.AsSpan(_starts[index], _lengths[index]);
        if (_templateParts is null)
        {
            return slice.ToArray();
        }

        var quoted = ShellQuote.Quote(slice);
        var result = new byte[_templateParts.Sum(p => p.Length) + (quoted.Length * (_templateParts.Length - 1))];
        var at = 0;
        for (var i = 0; i < _templateParts.Length; i++)
        {
            if (i > 0)
            {
                quoted.CopyTo(result, at);
                at += quoted.Length;
            }

            _templateParts[i].CopyTo(result, at);
            at += _templateParts[i].Length;
        }

        return result;
    }

    /// <summary>
    /// A hash of the first <paramref name="count"/> tasks (id, shape, command). The journal keeps it so that
    /// a changed task file is never matched against old results; tasks appended at the end keep the prefix.
    /// </summary>
    public string Fingerprint(int count)
    {
        // Fed through our own buffer: many small AppendData calls would each cost an interop call and garbage.
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 16];
        var used = 0;
        void Add(ReadOnlySpan<byte> data)
        {
            if (used + data.Length > buffer.Length)
            {
                hash.AppendData(buffer, 0, used);
                used = 0;
                if (data.Length > buffer.Length)
                {
                    hash.AppendData(data);
                    return;
                }
            }

            data.CopyTo(buffer.AsSpan(used));
            used += data.Length;
        }

        Span<byte> head = stackalloc byte[5];
        var seen = new bool[Shapes.Count];
        for (var i = 0; i < count; i++)
        {
            var shape = _shapeIndex[i];
            if (!seen[shape])
            {
                seen[shape] = true;
                Add(Encoding.UTF8.GetBytes(Shapes[shape].ToString()));
            }

            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(head, _ids[i]);
            head[4] = shape;
            Add(head);
            Add(_source.AsSpan(_starts[i], _lengths[i]));
            Add("\n"u8);
        }

        foreach (var part in _templateParts ?? [])
        {
            Add(part);
            Add("{}"u8);
        }

        hash.AppendData(buffer, 0, used);
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }
}

/// <summary>A <c>#SHOAL barrier</c> on <paramref name="Line"/>: no task from index <paramref name="Before"/> on starts
/// until every task before it has ended; with <paramref name="StopOnFailure"/>, the run stops there if one failed.</summary>
public sealed record TaskBarrier(int Line, int Before, bool StopOnFailure);

/// <summary>A command run once per node (<c>#SHOAL node-setup</c> / <c>node-teardown</c>), and the line it came from
/// (0: the command line).</summary>
public sealed record NodeStepCommand(string Command, int Line);
