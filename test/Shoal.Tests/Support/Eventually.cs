namespace Shoal.Tests.Support;

/// <summary>Waits for another thread to reach a state (a synchronisation aid, not a timing assertion).</summary>
public static class Eventually
{
    public static async Task True(Func<bool> condition, string what, int timeoutMs = 20_000)
    {
        var waited = 0;
        while (!condition())
        {
            if (waited > timeoutMs)
            {
                throw new TimeoutException($"gave up waiting for: {what}");
            }

            await Task.Delay(5);
            waited += 5;
        }
    }
}
