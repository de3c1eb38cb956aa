using System.Buffers.Binary;
using System.Text;

namespace Shoal.Protocol;

/// <summary>Reads what <see cref="PayloadWriter"/> wrote; any overrun is a <see cref="ProtocolException"/>.</summary>
internal ref struct PayloadReader
{
    private readonly ReadOnlySpan<byte> _data;
    private int _at;

    public PayloadReader(ReadOnlySpan<byte> data)
    {
        _data = data;
        _at = 0;
    }

    public readonly bool AtEnd => _at == _data.Length;

    public int Int() => BinaryPrimitives.ReadInt32LittleEndian(Take(4));

    public long Long() => BinaryPrimitives.ReadInt64LittleEndian(Take(8));

    public byte[] Bytes()
    {
        var n = Int();
        if (n < 0)
        {
            throw new ProtocolException("negative length in a message");
        }

        return Take(n).ToArray();
    }

    public string String() => Encoding.UTF8.GetString(Bytes());

    public ReadOnlySpan<byte> Raw(int n) => Take(n);

    public readonly void End()
    {
        if (!AtEnd)
        {
            throw new ProtocolException("trailing bytes in a message");
        }
    }

    private ReadOnlySpan<byte> Take(int n)
    {
        if (n < 0 || _data.Length - _at < n)
        {
            throw new ProtocolException("a message is shorter than its fields");
        }

        var s = _data.Slice(_at, n);
        _at += n;
        return s;
    }
}
