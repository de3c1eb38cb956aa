namespace Shoal.Tasks;

/// <summary>POSIX shell single-quoting: the argument reaches the command as one word, byte for byte.</summary>
public static class ShellQuote
{
    public static byte[] Quote(ReadOnlySpan<byte> value)
    {
        var safe = value.Length > 0;
        foreach (var b in value)
        {
            if (!(b is (>= (byte)'a' and <= (byte)'z') or (>= (byte)'A' and <= (byte)'Z') or (>= (byte)'0' and <= (byte)'9')
                || b == '-' || b == '_' || b == '.' || b == '/' || b == ',' || b == ':' || b == '=' || b == '+' || b == '@' || b == '%'))
            {
                safe = false;
                break;
            }
        }

        if (safe)
        {
            return value.ToArray();
        }

        var output = new List<byte>(value.Length + 8) { (byte)'\'' };
        foreach (var b in value)
        {
            if (b == '\'')
            {
                output.AddRange("'\\''"u8);
            }
            else
            {
                output.Add(b);
            }
        }

        output.Add((byte)'\'');
        return [.. output];
    }
}
