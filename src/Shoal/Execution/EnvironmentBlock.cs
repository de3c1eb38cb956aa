using System.Runtime.InteropServices;
using System.Text;

namespace Shoal.Execution;

/// <summary>The environment every task inherits, laid out once in native memory so a spawn only copies pointers.</summary>
internal sealed unsafe class EnvironmentBlock : IDisposable
{
    private readonly byte*[] _entries;

    public EnvironmentBlock(IEnumerable<string> overridden, IEnumerable<KeyValuePair<string, string>> extra)
    {
        var skip = new HashSet<string>(overridden, StringComparer.Ordinal);
        var list = new List<string>();
        foreach (System.Collections.DictionaryEntry e in Environment.GetEnvironmentVariables())
        {
            var key = (string)e.Key;
            if (!skip.Contains(key))
            {
                list.Add($"{key}={e.Value}");
            }
        }

        foreach (var (k, v) in extra)
        {
            list.Add($"{k}={v}");
        }

        _entries = new byte*[list.Count];
        for (var i = 0; i < list.Count; i++)
        {
            var bytes = Encoding.UTF8.GetBytes(list[i] + "\0");
            var p = (byte*)NativeMemory.Alloc((nuint)bytes.Length);
            bytes.CopyTo(new Span<byte>(p, bytes.Length));
            _entries[i] = p;
        }
    }

    public int Count => _entries.Length;

    public void CopyPointers(byte** destination)
    {
        for (var i = 0; i < _entries.Length; i++)
        {
            destination[i] = _entries[i];
        }
    }

    public void Dispose()
    {
        for (var i = 0; i < _entries.Length; i++)
        {
            NativeMemory.Free(_entries[i]);
            _entries[i] = null;
        }
    }
}
