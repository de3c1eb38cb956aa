using System.Net;
using System.Net.Sockets;

namespace Shoal.Tests.Support;

public static class Loopback
{
    /// <summary>Two ends of one real TCP connection on 127.0.0.1.</summary>
    public static async Task<(TcpClient Server, TcpClient Client)> PairAsync()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var client = new TcpClient();
        var connecting = client.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
        var server = await listener.AcceptTcpClientAsync();
        await connecting;
        return (server, client);
    }

    /// <summary>True once the other side has closed (end of stream or reset), false if it is still open after
    /// <paramref name="timeout"/>. Whatever arrives meanwhile is read and dropped.</summary>
    public static async Task<bool> ClosedWithinAsync(Stream stream, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var buffer = new byte[64 << 10];
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (await stream.ReadAsync(buffer, cts.Token) > 0)
            {
            }

            return true;
        }
        catch (IOException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }
}
