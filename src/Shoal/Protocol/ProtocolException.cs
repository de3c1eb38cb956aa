namespace Shoal.Protocol;

/// <summary>A peer broke the protocol (bad frame, failed authentication); its connection is closed.</summary>
public sealed class ProtocolException : Exception
{
    public ProtocolException(string message)
        : base(message)
    {
    }

    public ProtocolException(string message, Exception inner)
        : base(message, inner)
    {
    }

    public ProtocolException()
    {
    }
}
