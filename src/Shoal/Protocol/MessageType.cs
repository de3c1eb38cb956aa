namespace Shoal.Protocol;

/// <summary>Frame types. On the wire: never renumber.</summary>
public enum MessageType : byte
{
    Hello = 1,
    Challenge = 2,
    Auth = 3,
    Register = 4,
    Welcome = 5,
    Start = 10,
    Signal = 11,
    Shutdown = 12,
    Exits = 20,
    NodeStep = 21,
    Heartbeat = 30,
}
